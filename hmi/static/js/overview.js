// The plant overview: devices by area, their connection state, every tag live.
//
// High-performance HMI (ISA-101): grey, with colour only for what is abnormal. A
// value of bad quality keeps its last known value, struck through, with the reason;
// an uncertain one is marked with a dashed outline. Tags with limits show a bar.
// Updates arrive on one subscription for the whole plant and are applied once per
// animation frame, so a busy plant never makes the page fall behind.
import { h, replace } from "./dom.js";
import { formatTime, formatValue } from "./format.js";
import { paintMeter } from "./paint-meter.js";
import { openWriteDialog, sendEmergency } from "./write-dialog.js";

const TAG_UPDATES = `subscription($d: [String!]) { tagUpdates(devices: $d) {
  device tag value boolValue quality qualityReason unit ts valueTimestamp snapshot } }`;
const DEVICE_STATUS = `subscription { deviceStatus { device state detail reconnects lastPollAt } }`;

export function mount(container, { session, plant }) {
  const rows = new Map(); // "device/tag" -> the row's live cells
  const states = new Map(); // device -> its status cell
  const pending = new Map(); // "device/tag" -> {update, stamps}
  let frame = 0;

  const areas = plant.areas.map(([area, devices]) =>
    h(
      "section",
      { class: "area", "aria-label": `Area ${area}` },
      h("h2", {}, area),
      h("div", { class: "devices" }, devices.map((device) => deviceCard(device))),
    ),
  );
  replace(container, h("h1", { class: "screen-title" }, "Plant overview"), areas);

  function deviceCard(device) {
    const state = h("span", { class: "state" });
    states.set(device.id, state);
    showState(state, device.status ?? { state: "CONNECTING", detail: "" });
    const mayWrite = session.may("command.request", device.id, device.area);
    const stop = device.tags.find((tag) => tag.writable && tag.emergencyValues.length);
    return h(
      "article",
      { class: "device panel", "aria-label": `Device ${device.id}`, "data-device": device.id },
      h("header", {}, h("h3", {}, device.id), state),
      h(
        "table",
        { class: "tags" },
        h(
          "thead",
          {},
          h("tr", {}, h("th", {}, "Tag"), h("th", {}, "Value"), h("th", {}, "Limits"), h("th", {}, "Time"), h("th", {}, "")),
        ),
        h("tbody", {}, device.tags.map((tag) => tagRow(device, tag, mayWrite))),
      ),
      mayWrite && stop
        ? h(
            "button",
            {
              type: "button",
              class: "emergency",
              onclick: () => sendEmergency(session, device, stop),
            },
            `Emergency stop ${device.id}`,
          )
        : null,
    );
  }

  function tagRow(device, tag, mayWrite) {
    const value = h("span", { class: "value" });
    const unit = h("span", { class: "unit" }, tag.unit);
    const quality = h("span", { class: "quality" });
    const time = h("td", { class: "time" });
    const fill = h("span", { class: "fill" });
    const bar =
      tag.low !== null && tag.high !== null
        ? h(
            "span",
            { class: "bar", role: "meter", "aria-valuemin": tag.low, "aria-valuemax": tag.high, "aria-label": `${tag.name} within ${tag.low}–${tag.high}` },
            fill,
          )
        : null;
    const row = h(
      "tr",
      { "data-tag": tag.name },
      h("th", { scope: "row" }, tag.name),
      h("td", { class: "reading" }, value, " ", unit, " ", quality),
      h("td", { class: "limits" }, bar ? [bar, h("span", { class: "range" }, `${tag.low}–${tag.high}`)] : ""),
      time,
      h(
        "td",
        {},
        mayWrite && tag.writable
          ? h(
              "button",
              { type: "button", class: "write", onclick: () => openWriteDialog(session, device, tag, cells) },
              `Write ${tag.name}`,
            )
          : "",
      ),
    );
    const cells = { row, value, unit, quality, time, fill, bar, tag, current: tag };
    rows.set(`${device.id}/${tag.name}`, cells);
    show(cells, tag);
    return row;
  }

  function show(cells, update) {
    cells.current = { ...cells.current, ...update };
    const bad = update.quality === "BAD";
    const uncertain = update.quality === "UNCERTAIN";
    cells.value.textContent = formatValue(update.value, update.boolValue);
    cells.row.classList.toggle("bad", bad);
    cells.row.classList.toggle("uncertain", uncertain);
    cells.quality.textContent = bad
      ? `BAD ${update.qualityReason ?? ""}`.trim()
      : uncertain
        ? "UNCERTAIN"
        : update.quality === null
          ? "no value"
          : "";
    cells.time.textContent = formatTime(bad ? update.valueTimestamp : update.ts);
    if (cells.bar && update.value !== null && update.value !== undefined) {
      const { low, high } = cells.tag;
      const share = Math.min(1, Math.max(0, (update.value - low) / (high - low)));
      cells.fill.style.width = `${(share * 100).toFixed(1)}%`;
      cells.bar.setAttribute("aria-valuenow", update.value);
    }
  }

  function showState(cell, status) {
    cell.textContent = status.state.toLowerCase();
    cell.title = status.detail || "";
    cell.classList.toggle("abnormal", status.state !== "CONNECTED");
    if (status.detail) cell.textContent += ` (${status.detail})`;
  }

  function flush() {
    frame = 0;
    const stamps = [];
    for (const [key, { update, stamps: own }] of pending) {
      const cells = rows.get(key);
      if (cells) show(cells, update);
      stamps.push(...own);
    }
    pending.clear();
    paintMeter.applied(stamps);
  }

  const ids = plant.devices.map((device) => device.id);
  const stopUpdates = session.socket.subscribe(TAG_UPDATES, { d: ids }, {
    next: ({ data }) => {
      const stamp = paintMeter.arrived();
      const update = data.tagUpdates;
      const key = `${update.device}/${update.tag}`;
      const waiting = pending.get(key);
      if (waiting) {
        waiting.update = update;
        waiting.stamps.push(stamp);
      } else pending.set(key, { update, stamps: [stamp] });
      if (!frame) frame = requestAnimationFrame(flush);
    },
  });
  const stopStatus = session.socket.subscribe(DEVICE_STATUS, {}, {
    next: ({ data }) => {
      const cell = states.get(data.deviceStatus.device);
      if (cell) showState(cell, data.deviceStatus);
    },
  });
  return () => {
    stopUpdates();
    stopStatus();
    cancelAnimationFrame(frame);
  };
}
