// Admins only: operator accounts (add, disable/enable, role, new password) and the audit trail (filters, paging,
// CSV/JSON Lines export). Other roles never see the nav link; the API answers them 403 anyway.

import {api} from "../api.js";
import {chip, clearError, el, formatTime, guarded, showError} from "../dom.js";

const ROLES = ["viewer", "operator", "admin"];
const PAGE = 50;

function operatorRow(operator, refresh, me) {
  const roleSelect = el("select", {testid: "operator-role", "aria-label": `role of ${operator.username}`,
    onchange: async () => {
      if (await guarded(() => api.setRole(operator.username, roleSelect.value))) refresh();
      else roleSelect.value = operator.role;
    }}, ROLES.map((role) => el("option", {value: role, selected: role === operator.role}, role)));
  const toggle = el("button", {type: "button", class: operator.disabled ? "small" : "small danger",
    testid: operator.disabled ? "operator-enable" : "operator-disable",
    onclick: async () => {
      if (await guarded(() => api.setOperatorDisabled(operator.username, !operator.disabled))) refresh();
    }}, operator.disabled ? "Enable" : "Disable");
  const reset = el("button", {type: "button", class: "small", testid: "operator-reset", onclick: async () => {
    const password = window.prompt(`New password for ${operator.username} (their sessions will end):`);
    if (!password) return;
    if (await guarded(() => api.resetPassword(operator.username, password))) {
      clearError();
      refresh();
    }
  }}, "New password");
  return el("tr", {testid: "operator-row", dataset: {username: operator.username}},
    el("td", {}, el("strong", {}, operator.username), operator.username === me ? el("span", {class: "muted"}, " (you)")
      : null),
    el("td", {}, roleSelect),
    el("td", {}, chip(operator.disabled ? "disabled" : "enabled", operator.disabled ? "disconnected" : "connected",
      "operator-state")),
    el("td", {class: "nowrap"}, formatTime(operator.created_s)),
    el("td", {class: "row"}, toggle, reset));
}

function addForm(refresh) {
  const name = el("input", {type: "text", placeholder: "name", testid: "new-operator-name", required: true});
  const password = el("input", {type: "password", placeholder: "password", testid: "new-operator-password",
    required: true, autocomplete: "new-password"});
  const role = el("select", {testid: "new-operator-role"}, ROLES.map((r) => el("option", {value: r,
    selected: r === "operator"}, r)));
  return el("form", {class: "row", testid: "add-operator", onsubmit: async (event) => {
    event.preventDefault();
    if (await guarded(() => api.addOperator(name.value.trim(), password.value, role.value))) {
      name.value = "";
      password.value = "";
      refresh();
    }
  }}, name, password, role, el("button", {type: "submit", class: "primary"}, "Add operator"));
}

function auditSection() {
  const filters = {username: el("input", {type: "text", placeholder: "operator", testid: "audit-operator"}),
    action: el("input", {type: "text", placeholder: "action (e.g. search)", testid: "audit-action"}),
    target: el("input", {type: "text", placeholder: "target", testid: "audit-target"})};
  const body = el("tbody", {testid: "audit-rows"});
  const more = el("button", {type: "button", testid: "audit-more", hidden: true}, "Older");
  const csv = el("a", {class: "button", testid: "audit-export-csv"}, "Export CSV");
  const jsonl = el("a", {class: "button", testid: "audit-export-jsonl"}, "Export JSON Lines");
  let before = null;

  const values = () => Object.fromEntries(Object.entries(filters).map(([key, input]) => [key, input.value.trim()]));
  const load = async (reset) => {
    if (reset) {
      before = null;
      body.replaceChildren();
    }
    const rows = await guarded(() => api.audit({...values(), before_id: before, limit: PAGE}));
    if (!rows) return;
    body.append(...rows.map((line) => el("tr", {testid: "audit-row"},
      el("td", {class: "nowrap"}, formatTime(line.at_s)), el("td", {}, line.username),
      el("td", {}, line.role), el("td", {class: "mono small"}, line.client), el("td", {}, line.action),
      el("td", {class: "mono small"}, line.target || "—"), el("td", {class: "small"}, line.detail || ""))));
    before = rows.length ? rows[rows.length - 1].audit_id : before;
    more.hidden = rows.length < PAGE;
    csv.href = api.auditExportUrl("csv", values());
    jsonl.href = api.auditExportUrl("jsonl", values());
  };
  more.addEventListener("click", () => load(false));
  const form = el("form", {class: "row", testid: "audit-filters", onsubmit: (event) => {
    event.preventDefault();
    load(true);
  }}, Object.values(filters), el("button", {type: "submit"}, "Filter"), csv, jsonl);
  return {
    node: el("section", {testid: "audit"}, el("h2", {}, "Audit trail"),
      el("p", {class: "muted"}, "Who searched for, enrolled, watched, renamed, deleted or viewed which person or "
        + "crop, and who logged in; newest first."), form,
      el("div", {class: "table-wrap"}, el("table", {}, el("thead", {}, el("tr", {}, ["time", "operator", "role",
        "from", "action", "target", "detail"].map((title) => el("th", {}, title)))), body)), more),
    load,
  };
}

export async function renderAdmin(container, context) {
  if (context.session.user && context.session.user.role !== "admin") {
    showError(`forbidden: this page is for admins; you are ${context.session.user.role === "operator" ? "an" : "a"} `
      + `${context.session.user.role}`);
    return null;
  }
  const tbody = el("tbody", {testid: "operators"});
  const refresh = async () => {
    const operators = await guarded(() => api.operators());
    if (!operators || !context.isCurrent()) return;
    tbody.replaceChildren(...operators.map((o) => operatorRow(o, refresh, context.session.user.username)));
  };
  const audit = auditSection();
  container.append(el("h1", {}, "Admin"), el("section", {}, el("h2", {}, "Operators"),
    el("p", {class: "muted"}, "Viewers read; operators also enrol, watch, rename and delete; admins also manage "
      + "operators and read the audit trail. Disabling an operator or giving a new password ends their sessions."),
    addForm(refresh), el("div", {class: "table-wrap"}, el("table", {}, el("thead", {}, el("tr", {},
      ["operator", "role", "state", "created", ""].map((title) => el("th", {}, title)))), tbody))), audit.node);
  await Promise.all([refresh(), audit.load(true)]);
  return null;
}
