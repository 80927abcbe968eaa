// Recent commands, newest first, each with its timeline and signatures.
import { h, replace } from "./dom.js";
import { formatDateTime, formatValue } from "./format.js";
import { commandTimeline, showTrail, timelineList } from "./trail.js";

const COMMANDS = `query($a: String) { commands(first: 25, after: $a) {
  commands { requestedAt changedAt command { commandId device tag value status requestedBy approvedBy emergency reason } }
  endCursor hasMore } }`;

export function mount(container, { session, notify }) {
  const rows = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Older commands");
  const timeline = h("section", { "aria-label": "Selected command" });
  replace(
    container,
    h("h1", { class: "screen-title" }, "Commands"),
    h(
      "table",
      { class: "commands", "aria-label": "Recent commands" },
      h("thead", {}, h("tr", {}, ["Requested", "Device", "Tag", "Value", "Status", "By", ""].map((title) => h("th", {}, title)))),
      rows,
    ),
    more,
    timeline,
  );
  let cursor = null;
  async function page() {
    const listed = (await session.query(COMMANDS, { a: cursor })).commands;
    rows.append(
      ...listed.commands.map(({ requestedAt, command }) =>
        h(
          "tr",
          { "data-command": command.commandId, class: ["WRITE_FAILED", "EXPIRED", "REJECTED"].includes(command.status) ? "abnormal-row" : "" },
          h("td", {}, formatDateTime(requestedAt)),
          h("td", {}, command.device),
          h("td", {}, command.tag),
          h("td", {}, formatValue(typeof command.value === "number" ? command.value : null, typeof command.value === "boolean" ? command.value : null)),
          h("td", {}, command.status.toLowerCase(), command.emergency ? " (emergency)" : ""),
          h("td", {}, command.requestedBy, command.approvedBy ? `, approved by ${command.approvedBy}` : ""),
          h(
            "td",
            {},
            h("button", { type: "button", onclick: () => select(command) }, "Timeline"),
            session.may("audit.read")
              ? h("button", { type: "button", onclick: () => showTrail(session, command.commandId, `${command.device} ${command.tag}`) }, "Trail")
              : "",
          ),
        ),
      ),
    );
    cursor = listed.endCursor;
    more.hidden = !listed.hasMore;
  }
  async function select(command) {
    replace(timeline, h("h2", {}, `${command.device} ${command.tag}`), timelineList(await commandTimeline(session, command.commandId)));
    timeline.querySelector("h2").setAttribute("tabindex", "-1");
    timeline.querySelector("h2").focus();
  }
  more.addEventListener("click", () => page().catch((error) => notify(error.message)));
  page().catch((error) => notify(error.message));
  return () => {};
}
