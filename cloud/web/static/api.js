// The hub's REST API (see the API contract). Authenticated by the session cookie set at login.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

let onUnauthorized = () => {};

/** Called with the error's detail whenever a request (other than login) answers 401. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

function detailOf(body, response) {
  const detail = body && body.detail;
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail) && detail.length) { // FastAPI request validation: [{loc, msg}, ...]
    return detail.map((item) => {
      const where = Array.isArray(item.loc) ? item.loc.filter((part) => part !== "body").join(".") : "";
      return where ? `${where}: ${item.msg}` : String(item.msg);
    }).join("; ");
  }
  return `${response.status} ${response.statusText || "error"}`.trim();
}

async function request(method, path, {json, form} = {}) {
  const init = {method, credentials: "same-origin", headers: {Accept: "application/json"}};
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form; // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `cannot reach the hub (${error.message})`);
  }
  if (response.status === 204) return null;
  const isJson = (response.headers.get("content-type") || "").includes("application/json");
  const body = isJson ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const error = new ApiError(response.status, detailOf(body, response));
    if (response.status === 401 && path !== "/api/login") onUnauthorized(error.detail);
    throw error;
  }
  return body;
}

const enc = encodeURIComponent;

function query(params) {
  const entries = Object.entries(params).filter(([, value]) => value !== undefined && value !== null && value !== "");
  return entries.length ? `?${new URLSearchParams(entries)}` : "";
}

export const api = {
  login: (username, password) => request("POST", "/api/login", {json: {username, password}}),
  logout: () => request("POST", "/api/logout"),
  me: () => request("GET", "/api/me"),

  identities: () => request("GET", "/api/identities"),
  identity: (id) => request("GET", `/api/identities/${enc(id)}`),
  identitySightings: (id, limit = 200) => request("GET", `/api/identities/${enc(id)}/sightings${query({limit})}`),
  enroll: (form) => request("POST", "/api/identities", {form}),
  enrollFromSighting: (sightingId, displayName) =>
    request("POST", "/api/identities/from-sighting", {json: {sighting_id: sightingId, display_name: displayName || undefined}}),
  rename: (id, displayName) => request("PATCH", `/api/identities/${enc(id)}`, {json: {display_name: displayName}}),
  deleteIdentity: (id) => request("DELETE", `/api/identities/${enc(id)}`),
  timelineUrl: (id, version = "") => `/api/identities/${enc(id)}/timeline.png${query({v: version})}`,

  sightings: (params = {}) => request("GET", `/api/sightings${query(params)}`),
  sighting: (id) => request("GET", `/api/sightings/${enc(id)}`),
  unknownSightings: (limit = 100) => request("GET", `/api/sightings${query({unknown: "true", limit})}`),

  watchlist: () => request("GET", "/api/watchlist"),
  watch: (id, threshold) => request("PUT", `/api/watchlist/${enc(id)}`, {json: {threshold}}),
  unwatch: (id) => request("DELETE", `/api/watchlist/${enc(id)}`),

  search: (form) => request("POST", "/api/search", {form}),

  alerts: (afterId = 0, limit = 100) => request("GET", `/api/alerts${query({after_id: afterId, limit})}`),
  // first connection (afterId 0): only the newest `latest` alerts, not the whole history
  alertStreamUrl: (afterId = 0, latest = 50) =>
    `/api/alerts/stream${query(afterId > 0 ? {after_id: afterId} : {latest})}`,

  edges: () => request("GET", "/api/edges"),

  // admins only (issue 12)
  operators: () => request("GET", "/api/operators"),
  addOperator: (username, password, role) => request("POST", "/api/operators", {json: {username, password, role}}),
  setOperatorDisabled: (username, disabled) =>
    request("POST", `/api/operators/${enc(username)}/${disabled ? "disable" : "enable"}`),
  resetPassword: (username, password) => request("PUT", `/api/operators/${enc(username)}/password`, {json: {password}}),
  setRole: (username, role) => request("PUT", `/api/operators/${enc(username)}/role`, {json: {role}}),
  audit: (params = {}) => request("GET", `/api/audit${query(params)}`),
  auditExportUrl: (format, params = {}) => `/api/audit/export${query({...params, format})}`,
};

/** The watchlist threshold offered by default: a P(same) in [0, 1] (models.scores.DEFAULT_WATCH_P_SAME). */
export const DEFAULT_WATCH_THRESHOLD = 0.5;

/** The one rule for a watch threshold (the API answers 422 otherwise): a P(same) in [0, 1]. */
export function checkThreshold(value) {
  return Number.isFinite(value) && value >= 0 && value <= 1 ? null : `threshold: expected a P(same) in [0, 1], got ${value}`;
}
