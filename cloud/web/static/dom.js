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

/** Seconds since the epoch → local date and time; small values are positions in a recording. */
export function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1e9) return `t+${seconds.toFixed(1)} s`;
  const date = new Date(seconds * 1000);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  const time = date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
  return sameDay ? time : `${date.toLocaleDateString()} ${time}`;
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
  return el("dl", {}, pairs.map(([term, value]) => [el("dt", {}, term), el("dd", {title: String(value)}, value)]));
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
