// The HMI's shell: the login screen, then the screens the user's roles allow, by URL hash.
import { h, replace } from "./dom.js";
import { Session } from "./session.js";
import { showLogin } from "./login.js";
import { Plant } from "./plant.js";
import * as overview from "./overview.js";
import * as trends from "./trends.js";
import * as alarms from "./alarms.js";
import * as commands from "./commands.js";
import * as approvals from "./approvals.js";
import * as audit from "./audit.js";
import { paintMeter } from "./paint-meter.js";

// Each screen: its hash, title, the action it needs, and its mount(container, context).
const SCREENS = [
  { hash: "overview", title: "Overview", needs: "view", screen: overview },
  { hash: "trends", title: "Trends", needs: "history.read", screen: trends },
  { hash: "alarms", title: "Alarms", needs: "view", screen: alarms },
  { hash: "commands", title: "Commands", needs: "view", screen: commands },
  { hash: "approvals", title: "Approvals", needs: "command.approve", screen: approvals },
  { hash: "audit", title: "Audit", needs: "audit.read", screen: audit },
];

const main = document.getElementById("main");
const top = document.getElementById("top");
const tabs = document.getElementById("tabs");
const banner = document.getElementById("banner");
let session = null;
let unmount = () => {};

// The tests (and anyone curious, from the console) read the live view's figures here.
window.plantcoreHmi = { paintMeter };

function start(message = null) {
  unmount();
  unmount = () => {};
  top.hidden = true;
  session = new Session();
  session.addEventListener("ended", (event) => start(event.detail && `Session ended: ${event.detail.replace(/^Session ended: /, "")}`));
  showLogin(main, session, message, () => signedIn(session));
}

async function signedIn(current) {
  const plant = await Plant.load(current);
  const allowed = SCREENS.filter((entry) => current.may(entry.needs));
  replace(
    tabs,
    allowed.map((entry) => h("a", { href: `#${entry.hash}`, "data-screen": entry.hash }, entry.title)),
  );
  replace(
    document.getElementById("who"),
    `${current.me.fullName} (${current.me.username}) · ${current.me.roles.join(", ")}`,
  );
  const link = document.getElementById("link");
  const showLink = (state) => {
    link.textContent = state === "live" ? "● live" : `○ ${state}…`;
    link.className = state === "live" ? "" : "abnormal";
  };
  showLink(current.socket.state);
  current.socket.addEventListener("state", (event) => showLink(event.detail));
  top.hidden = false;
  const show = () => {
    const wanted = window.location.hash.slice(1) || "overview";
    const entry = allowed.find((candidate) => candidate.hash === wanted) ?? allowed[0];
    for (const tab of tabs.children) {
      if (tab.dataset.screen === entry.hash) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    unmount();
    notify("");
    replace(main);
    document.title = `${entry.title} · plantcore`;
    unmount = entry.screen.mount(main, { session: current, plant, notify }) ?? (() => {});
  };
  window.onhashchange = show;
  show();
}

/** A message for the operator at the top of the screen (an error, a refusal). */
function notify(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

document.getElementById("logout").addEventListener("click", () => session?.logout());
start();
