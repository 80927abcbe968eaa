// The login screen: user name and password; why the last session ended, if it did.
import { field, h, replace } from "./dom.js";

export function showLogin(container, session, message, onSignedIn) {
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const problem = h("p", { class: "abnormal", role: "alert" }, message ?? "");
  const form = h(
    "form",
    { class: "login panel", "aria-label": "Log in" },
    h("h1", {}, "plantcore"),
    problem,
    field("User name", username),
    field("Password", password),
    h("button", { type: "submit" }, "Log in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    try {
      await session.login(username.value, password.value);
      onSignedIn();
    } catch (error) {
      problem.textContent = `Login refused: ${error.message}`;
      password.value = "";
      password.focus();
    }
  });
  replace(container, form);
  username.focus();
}
