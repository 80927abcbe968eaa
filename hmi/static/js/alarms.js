// Alarms: the active list (priority, then newest first), the operator's actions on
// each (ISA-18.2: acknowledge, shelve, unshelve, out of service, reset a latch),
// floods and chattering alarms, and the journal a page at a time.
import { field, h, replace } from "./dom.js";
import { PRIORITIES, formatDateTime, priorityBadge } from "./format.js";
import { showTrail } from "./trail.js";

const VIEW = "alarmId device condition kind priority area tag state active acknowledged chattering shelvedUntil raisedAt";
const ACTIVE = `{ alarms(active: true) { ${VIEW} } }`;
const EVENTS = "subscription { alarmEvents { alarmId device area event state } }";
const JOURNAL = `query($s: DateTime!, $u: DateTime!, $a: String, $n: Int!) {
  alarmJournal(since: $s, until: $u, first: $n, after: $a) {
    events { position alarmId device condition event actor at state } endCursor hasNextPage } }`;
// Only the position and area of one event's entries: cheap enough to ask for a long page.
const FLOODS = `query($s: DateTime!, $u: DateTime!, $e: String!) {
  alarmJournal(since: $s, until: $u, event: $e, first: 500) { events { position area event } } }`;
const ACTIONS = {
  acknowledge: `mutation($id: ID!, $c: String!) { acknowledgeAlarm(alarmId: $id, comment: $c) { state } }`,
  shelve: `mutation($id: ID!, $r: String!, $m: Int!) { shelveAlarm(alarmId: $id, reason: $r, minutes: $m) { state } }`,
  unshelve: `mutation($id: ID!) { unshelveAlarm(alarmId: $id) { state } }`,
  remove: `mutation($id: ID!, $r: String!) { removeAlarmFromService(alarmId: $id, reason: $r) { state } }`,
  restore: `mutation($id: ID!) { returnAlarmToService(alarmId: $id) { state } }`,
  reset: `mutation($id: ID!) { resetAlarmLatch(alarmId: $id) { state } }`,
};
const JOURNAL_PAGE = 25;
const DAY_MS = 24 * 3600 * 1000;

export function byPriorityThenTime(a, b) {
  const rank = (alarm) => PRIORITIES[alarm.priority]?.rank ?? 9;
  return rank(a) - rank(b) || Date.parse(b.raisedAt ?? 0) - Date.parse(a.raisedAt ?? 0);
}

export function mount(container, { session, notify }) {
  const flood = h("p", { class: "flood", role: "status", hidden: true });
  const active = h("tbody");
  const journal = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Next page");
  replace(
    container,
    h("h1", { class: "screen-title" }, "Alarms"),
    flood,
    h("h2", {}, "Active"),
    h(
      "table",
      { class: "alarms", "aria-label": "Active alarms" },
      h("thead", {}, h("tr", {}, ["Priority", "Device", "Condition", "State", "Raised", "Actions"].map((title) => h("th", {}, title)))),
      active,
    ),
    h("h2", {}, "Journal (last 24 h)"),
    h(
      "table",
      { class: "journal", "aria-label": "Alarm journal" },
      h("thead", {}, h("tr", {}, ["Time", "Device", "Condition", "Event", "By", "State", ""].map((title) => h("th", {}, title)))),
      journal,
    ),
    more,
  );

  async function refresh() {
    const alarms = (await session.query(ACTIVE)).alarms.sort(byPriorityThenTime);
    replace(active, alarms.length ? alarms.map(alarmRow) : h("tr", {}, h("td", { colspan: 6 }, "No alarms.")));
  }

  function alarmRow(alarm) {
    const actions = h("td", { class: "actions" });
    const may = (action) => session.may(action, alarm.device, alarm.area);
    const act = (label, action, query, ask) =>
      may(action)
        ? h("button", { type: "button", onclick: () => perform(label, alarm, query, ask) }, label)
        : null;
    actions.append(
      ...[
        !alarm.acknowledged && alarm.state !== "out_of_service"
          ? act("Acknowledge", "alarm.acknowledge", ACTIONS.acknowledge, [["Comment", "c", "text"]])
          : null,
        alarm.state === "shelved"
          ? act("Unshelve", "alarm.shelve", ACTIONS.unshelve, [])
          : alarm.state !== "out_of_service"
            ? act("Shelve", "alarm.shelve", ACTIONS.shelve, [["Minutes", "m", "number"], ["Reason", "r", "text"]])
            : null,
        alarm.state === "out_of_service"
          ? act("Return to service", "alarm.remove_from_service", ACTIONS.restore, [])
          : act("Out of service", "alarm.remove_from_service", ACTIONS.remove, [["Reason", "r", "text"]]),
        alarm.state === "latched" ? act("Reset latch", "alarm.reset_latch", ACTIONS.reset, []) : null,
        // The alarm's stored events: the auditor's (the journal below is everyone's).
        session.may("audit.read")
          ? h("button", { type: "button", onclick: () => showTrail(session, alarm.alarmId, `${alarm.device} ${alarm.condition}`) }, "Trail")
          : null,
      ].filter(Boolean),
    );
    return h(
      "tr",
      { class: `alarm state-${alarm.state}`, "data-alarm": alarm.alarmId },
      h("td", {}, priorityBadge(alarm.priority)),
      h("td", {}, alarm.device),
      h("td", {}, alarm.condition, alarm.chattering ? h("span", { class: "chattering" }, " chattering") : ""),
      h("td", { class: "state" }, alarm.state, alarm.shelvedUntil ? ` until ${formatDateTime(alarm.shelvedUntil)}` : ""),
      h("td", {}, formatDateTime(alarm.raisedAt)),
      actions,
    );
  }

  /** An action's inputs in a dialog (keyboard: Tab through, Enter sends, Escape cancels). */
  function perform(label, alarm, query, inputs) {
    const controls = inputs.map(([name, variable, type]) => [
      variable,
      type,
      h("input", { name: variable, type, required: true, min: type === "number" ? 1 : null, value: type === "number" ? "60" : null }),
      name,
    ]);
    const problem = h("p", { class: "abnormal", role: "alert" });
    const form = h(
      "form",
      { method: "dialog" },
      controls.map(([, , control, name]) => field(name, control)),
      problem,
      h("button", { type: "submit" }, label),
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"),
    );
    const dialog = h("dialog", { class: "panel", "aria-label": `${label} ${alarm.condition}` }, h("h2", {}, `${label}: ${alarm.device} ${alarm.condition}`), form);
    dialog.addEventListener("close", () => dialog.remove());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const variables = { id: alarm.alarmId };
      for (const [variable, type, control] of controls) {
        variables[variable] = type === "number" ? Number(control.value) : control.value;
      }
      try {
        await session.query(query, variables);
        dialog.close();
        await refresh();
      } catch (error) {
        problem.textContent = `Refused: ${error.message}`;
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    (controls[0]?.[2] ?? form.querySelector("button")).focus();
  }

  let cursor = null;
  async function journalPage() {
    const now = Date.now();
    const variables = { s: new Date(now - DAY_MS).toISOString(), u: new Date(now + 60000).toISOString(), a: cursor, n: JOURNAL_PAGE };
    const page = (await session.query(JOURNAL, variables)).alarmJournal;
    journal.append(
      ...page.events.map((entry) =>
        h(
          "tr",
          {},
          h("td", {}, formatDateTime(entry.at)),
          h("td", {}, entry.device),
          h("td", {}, entry.condition),
          h("td", {}, entry.event),
          h("td", {}, entry.actor),
          h("td", {}, entry.state),
          h("td", {}, entry.alarmId && session.may("audit.read") ? h("button", { type: "button", onclick: () => showTrail(session, entry.alarmId, entry.condition) }, "Trail") : ""),
        ),
      ),
    );
    cursor = page.endCursor;
    more.hidden = !page.hasNextPage;
  }
  more.addEventListener("click", () => journalPage().catch((error) => notify(error.message)));

  /** An area floods when its last FloodStarted is newer than its last FloodEnded. */
  const flooding = new Set();
  async function floodState() {
    const now = Date.now();
    const range = { s: new Date(now - DAY_MS).toISOString(), u: new Date(now + 60000).toISOString() };
    const pages = await Promise.all(
      ["FloodStarted", "FloodEnded"].map((e) => session.query(FLOODS, { ...range, e })),
    );
    const entries = pages.flatMap((page) => page.alarmJournal.events).sort((a, b) => a.position - b.position);
    for (const entry of entries) floodIn(entry);
  }
  function floodIn({ area, event }) {
    if (event === "FloodStarted") flooding.add(area);
    else if (event === "FloodEnded") flooding.delete(area);
    else return;
    flood.hidden = flooding.size === 0;
    flood.textContent = flooding.size
      ? `Alarm flood in ${[...flooding].sort().join(", ")}: more alarms than an operator can handle; the most urgent first.`
      : "";
  }

  let queued = null;
  const stop = session.socket.subscribe(EVENTS, {}, {
    next: ({ data }) => {
      floodIn(data.alarmEvents);
      // A burst of events refreshes the list once.
      queued ??= setTimeout(() => {
        queued = null;
        refresh().catch((error) => notify(error.message));
      }, 100);
    },
  });
  Promise.all([refresh(), journalPage(), floodState()]).catch((error) => notify(error.message));
  return () => {
    stop();
    clearTimeout(queued);
  };
}
