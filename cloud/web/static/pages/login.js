import {api} from "../api.js";
import {clearError, el, showError} from "../dom.js";

export async function renderLogin(container, context) {
  const username = el("input", {type: "text", name: "username", autocomplete: "username", required: true,
    testid: "login-username"});
  const password = el("input", {type: "password", name: "password", autocomplete: "current-password", required: true,
    testid: "login-password"});
  const submit = el("button", {type: "submit", class: "primary", testid: "login-submit"}, "Log in");
  const form = el("form", {testid: "login-form", onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    clearError();
    try {
      const answer = await api.login(username.value.trim(), password.value);
      context.onLoggedIn({username: answer.username, expires_s: answer.expires_s, role: answer.role});
    } catch (error) {
      showError(error);
      password.select();
    } finally {
      submit.disabled = false;
    }
  }},
  el("label", {}, "User", username),
  el("label", {}, "Password", password),
  submit);
  container.append(el("div", {class: "panel login-card"},
    el("h1", {}, "crossview hub"),
    el("p", {class: "muted"}, "Log in to search the cameras, manage the watchlist and see live alerts."),
    form));
  username.focus();
}
