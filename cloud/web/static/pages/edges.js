// Edges and their cameras: connection, last heartbeat age, recent frame rates and states, outbox depth. Refreshed
// every few seconds.

import {api} from "../api.js";
import {chip, el, formatAge, formatNumber, formatTime, guarded, nowSeconds} from "../dom.js";

const REFRESH_MS = 3000;

// "no frames since 14:02:07 (41 s)": the edge's state, and when its gap began
function cameraStatus(camera) {
  if (!camera.status) return null;
  const label = camera.status.replace("_", " ");
  const since = Number.isFinite(camera.since_s)
    ? ` since ${formatTime(camera.since_s)} (${formatAge(nowSeconds() - camera.since_s)})` : "";
  return el("span", {class: "muted", testid: "camera-status"}, ` · ${label}${since}`);
}

function camerasCell(cameras) {
  if (!cameras.length) return el("span", {class: "muted"}, "none reported");
  return el("div", {class: "cameras"}, cameras.map((camera) => el("span", {class: "camera", testid: "camera",
    dataset: {cameraId: camera.camera_id}},
  el("strong", {}, camera.camera_id), " ",
  el("span", {testid: "camera-fps"}, camera.fps === null || camera.fps === undefined ? "— fps"
    : `${formatNumber(camera.fps, 1)} fps`),
  cameraStatus(camera))));
}

function edgeRow(edge) {
  return el("tr", {testid: "edge-row", dataset: {edgeId: edge.edge_id, connected: String(edge.connected)}},
    el("td", {class: "nowrap"}, el("strong", {}, edge.edge_id)),
    el("td", {}, edge.site || "—"),
    el("td", {}, chip(edge.connected ? "connected" : "disconnected", edge.connected ? "connected" : "disconnected",
      "edge-connected"), edge.connected && edge.connected_hub_id
      ? el("div", {class: "muted small"}, `to ${edge.connected_hub_id}`) : null),
    el("td", {class: "nowrap", testid: "edge-heartbeat-age", dataset: {lastSeen: String(edge.last_seen_s ?? "")}},
      edge.last_seen_s ? `${formatAge(nowSeconds() - edge.last_seen_s)} ago` : "never"),
    el("td", {}, camerasCell(edge.cameras || [])),
    el("td", {testid: "edge-outbox"}, edge.outbox_depth === null || edge.outbox_depth === undefined
      ? "—" : String(edge.outbox_depth)),
    el("td", {}, String(edge.gallery_version ?? "—")),
    el("td", {class: "mono small nowrap", title: edge.model_fingerprint || ""}, edge.model_fingerprint || "—"));
}

export async function renderEdges(container, context) {
  const body = el("div", {testid: "edges-body"});
  const updated = el("span", {class: "muted small", testid: "edges-updated"});
  let timer = null;

  const draw = (edges) => {
    const connected = edges.filter((edge) => edge.connected).length;
    body.replaceChildren(
      el("p", {class: "muted"}, `${edges.length} edge${edges.length === 1 ? "" : "s"}, ${connected} connected`),
      edges.length ? el("div", {class: "table-wrap"}, el("table", {testid: "edges"},
        el("thead", {}, el("tr", {}, ["edge", "site", "link", "last heartbeat", "cameras", "outbox", "gallery",
          "model"].map((title) => el("th", {}, title)))),
        el("tbody", {}, edges.map(edgeRow))))
        : el("p", {class: "muted", testid: "edges-empty"}, "No edge has connected yet."));
    updated.textContent = `updated ${new Date().toLocaleTimeString([], {hour12: false})}`;
  };
  const refresh = async () => {
    const edges = await guarded(() => api.edges());
    if (!context.isCurrent()) return;
    if (edges) draw(edges);
    timer = setTimeout(refresh, REFRESH_MS);
  };

  container.append(el("div", {class: "row"}, el("h1", {}, "Edges & cameras"), el("span", {class: "spacer"}), updated),
    body);
  await refresh();
  return () => clearTimeout(timer);
}
