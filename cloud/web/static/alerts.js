// The live alerts panel: an EventSource on /api/alerts/stream; newest alert at the top.

import {api} from "./api.js";
import {el, formatPSame, formatSpan, formatTime, identityHash, navigate, P_SAME_HELP, timeTitle} from "./dom.js";

const MAX_SHOWN = 50;
const RETRY_MS = 3000;

let source = null;
let lastId = 0;
let retryTimer = null;
let started = false;
let checkSession = async () => true;

const panel = () => document.querySelector("[data-testid=alerts-panel]");
const list = () => panel().querySelector("[data-testid=alerts-list]");

function setStatus(text, kind) {
  const status = panel().querySelector("[data-testid=alerts-status]");
  status.textContent = text;
  status.className = `live-status chip ${kind}`;
}

function render(alert, fresh) {
  const label = alert.display_name || alert.identity_id;
  const seen = Number.isFinite(alert.start_s) ? alert.start_s : alert.created_s; // when the person was seen
  const when = Number.isFinite(alert.start_s) ? formatSpan(alert.start_s, alert.end_s) : formatTime(alert.created_s);
  return el("li", {
    class: `alert-item${fresh ? " fresh" : ""}`, testid: "alert",
    dataset: {alertId: String(alert.alert_id), identityId: alert.identity_id},
    title: `alert ${alert.alert_id}: open ${label}`,
    onclick: () => navigate(identityHash(alert.identity_id)),
  },
  el("img", {src: alert.crop_url, alt: `crop of ${label}`, loading: "lazy"}),
  el("div", {},
    el("div", {class: "name", testid: "alert-name"}, label),
    el("div", {class: "meta", testid: "alert-camera"}, `${alert.camera_id} · ${alert.edge_id}`),
    el("div", {class: "meta", testid: "alert-seen", title: `${timeTitle(seen)}\n${P_SAME_HELP}`},
      `${when} · P(same) ${formatPSame(alert.p_same)}`)));
}

function add(alert, fresh) {
  if (alert.alert_id <= lastId) return;
  lastId = alert.alert_id;
  const items = list();
  items.prepend(render(alert, fresh));
  while (items.children.length > MAX_SHOWN) items.lastElementChild.remove();
  panel().querySelector("[data-testid=alerts-empty]").hidden = true;
}

function connect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  setStatus("connecting", "reconnecting");
  // Alerts that existed before this page opened are shown without the "new" highlight.
  const openedAt = Date.now() / 1000;
  source = new EventSource(api.alertStreamUrl(lastId));
  source.addEventListener("open", () => setStatus("live", "live"));
  source.addEventListener("alert", (event) => {
    let alert;
    try {
      alert = JSON.parse(event.data);
    } catch {
      return;
    }
    add(alert, alert.created_s >= openedAt - 5);
  });
  // the hub ends the stream when its session ends (logout elsewhere, disabled, new password): to the login page
  source.addEventListener("session_ended", async () => {
    source.close();
    setStatus("offline", "disconnected");
    await checkSession();
  });
  source.addEventListener("error", async () => {
    if (!started) return;
    if (source && source.readyState === EventSource.CONNECTING) {
      setStatus("reconnecting", "reconnecting"); // the browser retries by itself, resuming from Last-Event-ID
      return;
    }
    source.close();
    setStatus("offline", "disconnected");
    if (await checkSession()) retryTimer = setTimeout(connect, RETRY_MS);
  });
}

/** Start (or keep) the live feed. `sessionAlive()` says whether to retry after the stream closes. */
export function startAlerts(sessionAlive) {
  checkSession = sessionAlive;
  if (started) return;
  started = true;
  connect();
}

/** Stop the feed and forget what it showed (at logout). */
export function stopAlerts() {
  started = false;
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
  lastId = 0;
  list().replaceChildren();
  panel().querySelector("[data-testid=alerts-empty]").hidden = false;
  setStatus("offline", "disconnected");
}
