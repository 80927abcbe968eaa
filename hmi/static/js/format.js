// How values, times and qualities are written on screen.

export function formatValue(value, boolValue = null) {
  if (boolValue !== null && boolValue !== undefined) return boolValue ? "on" : "off";
  if (value === null || value === undefined) return "—";
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(1) : value.toFixed(2);
}

export function formatTime(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleTimeString([], { hour12: false });
}

export function formatDateTime(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  return `${at.toLocaleDateString()} ${at.toLocaleTimeString([], { hour12: false })}`;
}

/** ISA-18.2 priorities, most urgent first, each with its own shape as well as its colour. */
export const PRIORITIES = {
  critical: { rank: 0, shape: "◆" },
  high: { rank: 1, shape: "▲" },
  medium: { rank: 2, shape: "■" },
  low: { rank: 3, shape: "●" },
};

export function priorityBadge(priority) {
  const known = PRIORITIES[priority] ?? { shape: "●" };
  const badge = document.createElement("span");
  badge.className = `priority priority-${priority}`;
  badge.textContent = `${known.shape} ${priority}`;
  return badge;
}
