// Small DOM helpers. Every value from the API goes in as text (textContent / attributes), never as HTML.

/** el("div", {class: "x", testid: "y", onclick: fn}, child, "text", [more]) */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "testid") node.dataset.testid = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "value") node.value = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const errorBanner = () => document.querySelector("[data-testid=error]");

/** Show an API error (its `detail` line) or any message at the top of the page. */
export function showError(error) {
  const banner = errorBanner();
  banner.textContent = typeof error === "string" ? error : (error && error.message) || "something went wrong";
  banner.hidden = false;
}

export function clearError() {
  const banner = errorBanner();
  banner.textContent = "";
  banner.hidden = true;
}

/** Run an async action; show its error (if any) in the banner. Returns the action's result or undefined. */
export async function guarded(action) {
  try {
    return await action();
  } catch (error) {
    if (error && error.status === 401) return undefined; // the app already went to the login page
    showError(error);
    return undefined;
  }
}

// When a person was seen: the rule of cloud/times.py. Live cameras (and replays given recorded_at) carry Unix
// seconds, shown as local date and time; a replay without recorded_at carries seconds into its video, shown as
// "video +220.4 s". No recording runs for 31 years, so a time below WALL_CLOCK_FROM_S is a video offset.
const WALL_CLOCK_FROM_S = 1e9;

export function isWallClock(seconds) {
  return seconds >= WALL_CLOCK_FROM_S;
}

function clock(date) {
  return date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
}

/** Seconds → "14:03:07" (today), "25/11/2026 14:03:07" (another day), or "video +220.4 s". */
export function formatTime(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (!isWallClock(seconds)) return `video +${seconds.toFixed(1)} s`;
  const date = new Date(seconds * 1000);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? clock(date) : `${date.toLocaleDateString()} ${clock(date)}`;
}

/** A span: "14:03:07–14:03:11", "video +7.4–9.5 s". */
export function formatSpan(start, end) {
  if (!Number.isFinite(start) || !Number.isFinite(end) || isWallClock(start) !== isWallClock(end)) {
    return `${formatTime(start)} – ${formatTime(end)}`;
  }
  if (!isWallClock(start)) return `video +${start.toFixed(1)}–${end.toFixed(1)} s`;
  return `${formatTime(start)}–${clock(new Date(end * 1000))}`;
}

/** The tooltip of a time: the UTC time, or what a video offset is. */
export function timeTitle(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  return isWallClock(seconds) ? new Date(seconds * 1000).toISOString()
    : "seconds into the recording (a replay without recorded_at)";
}

/** A time as an element with its UTC (or "seconds into the recording") tooltip. */
export function timeEl(start, end = undefined) {
  const text = end === undefined ? formatTime(start) : formatSpan(start, end);
  return el("span", {class: "time", title: timeTitle(start)}, text);
}

// The one score: P(same), the calibrated probability that two tracklets show the same person (models/scores.py).
export const P_SAME_LABEL = "P(same)";
export const P_SAME_HELP = "P(same): the probability, from 0 to 1, that it is the same person. "
  + "P(same) 0.9: about 9 in 10 such matches are the same person.";

export function formatPSame(value) {
  return value === null || value === undefined || Number.isNaN(value) ? "—" : Number(value).toFixed(2);
}

/** "P(same) 0.93" with the scale's explanation as its tooltip. */
export function pSame(value, label = P_SAME_LABEL) {
  return el("span", {class: "p-same", title: P_SAME_HELP}, `${label} ${formatPSame(value)}`);
}

/** The short help line shown where P(same) numbers are. */
export function pSameHelp() {
  return el("p", {class: "muted small help", testid: "p-same-help"}, P_SAME_HELP);
}

/** "12 s", "4 min", "3 h" */
export function formatAge(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "never";
  const s = Math.max(0, seconds);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

export function formatNumber(value, digits = 3) {
  return value === null || value === undefined || Number.isNaN(value) ? "—" : Number(value).toFixed(digits);
}

export function nowSeconds() {
  return Date.now() / 1000;
}

/** A definition list from [[term, value], ...]. */
export function facts(pairs) {
  return el("dl", {}, pairs.map(([term, value]) => [el("dt", {}, term),
    el("dd", {title: value instanceof Node ? undefined : String(value)}, value)]));
}

export function chip(text, kind = "", testid = undefined) {
  return el("span", {class: `chip ${kind}`, testid}, text);
}

/** A local file as a data: URL (previews stay data: URLs; the page loads nothing but the hub and data:). */
export function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** Go to a hash route; going to the page already shown renders it again (fresh data). */
export function navigate(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

export function identityHash(identityId) {
  return `#/identity/${encodeURIComponent(identityId)}`;
}
