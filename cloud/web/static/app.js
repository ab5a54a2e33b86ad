// Entry point: session, hash routes and the page frame. Pages live in ./pages/, one module each.

import {api, setUnauthorizedHandler} from "./api.js";
import {startAlerts, stopAlerts} from "./alerts.js";
import {clearError, el, showError} from "./dom.js";
import {renderLogin} from "./pages/login.js";
import {renderSearch} from "./pages/search.js";
import {renderIdentity} from "./pages/identity.js";
import {renderIdentities} from "./pages/identities.js";
import {renderEdges} from "./pages/edges.js";
import {renderEnroll} from "./pages/enroll.js";
import {renderAdmin} from "./pages/admin.js";

const ROUTES = [
  {pattern: /^\/login$/, name: "login", render: renderLogin, public: true},
  {pattern: /^\/search$/, name: "search", render: renderSearch},
  {pattern: /^\/identity\/(.+)$/, name: "identities", render: renderIdentity},
  {pattern: /^\/identities$/, name: "identities", render: renderIdentities},
  {pattern: /^\/enroll$/, name: "enroll", render: renderEnroll},
  {pattern: /^\/edges$/, name: "edges", render: renderEdges},
  {pattern: /^\/admin$/, name: "admin", render: renderAdmin},
];
const HOME = "#/search";

const session = {user: null, next: HOME, loginMessage: null};
let cleanup = null;
let renderCount = 0;

function setLoggedIn(user) {
  session.user = user;
  document.body.classList.toggle("logged-out", !user);
  const current = document.querySelector("[data-testid=current-user]");
  current.textContent = user ? user.username : "";
  current.title = user ? `role: ${user.role}` : "";
  document.querySelector("[data-testid=nav-admin]").hidden = !user || user.role !== "admin";
  document.body.dataset.role = user ? user.role : "";
  if (user) startAlerts(sessionAlive);
  else stopAlerts();
}

async function sessionAlive() {
  try {
    await api.me();
    return true;
  } catch {
    return false;
  }
}

function goToLogin(detail) {
  const here = location.hash;
  // "session expired; log in again" is worth saying on the login page; "not logged in" is what it shows anyway
  const message = detail && detail !== "not logged in" ? detail : null;
  setLoggedIn(null);
  if (here.startsWith("#/login")) {
    if (message) showError(message);
    return;
  }
  session.next = here || HOME;
  session.loginMessage = message;
  location.hash = "#/login";
}

setUnauthorizedHandler(goToLogin);

function decoded(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part; // a malformed %-escape: use it as typed
  }
}

function currentRoute() {
  const path = location.hash.replace(/^#/, "") || "/";
  for (const route of ROUTES) {
    const match = path.match(route.pattern);
    if (match) return {route, params: match.slice(1).map(decoded)};
  }
  return null;
}

async function route() {
  const found = currentRoute();
  if (!found) {
    location.replace(session.user ? HOME : "#/login");
    return;
  }
  const {route: page, params} = found;
  if (!page.public && !session.user) {
    goToLogin();
    return;
  }
  if (page.name === "login" && session.user) {
    location.replace(HOME);
    return;
  }
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  clearError();
  if (page.name === "login" && session.loginMessage) showError(session.loginMessage);
  session.loginMessage = null;
  for (const link of document.querySelectorAll(".nav a")) {
    link.classList.toggle("active", link.dataset.route === page.name);
  }
  const view = document.getElementById("view");
  const container = el("section", {class: `page page-${page.name}`});
  view.replaceChildren(container);
  const mine = ++renderCount;
  const context = {
    params,
    session,
    isCurrent: () => mine === renderCount, // false once the user has moved on to another page
    onLoggedIn: (user) => {
      setLoggedIn(user);
      const next = session.next && !session.next.startsWith("#/login") ? session.next : HOME;
      session.next = HOME;
      location.hash = next;
    },
  };
  try {
    cleanup = await page.render(container, context);
  } catch (error) {
    if (error && error.status === 401) return;
    if (context.isCurrent()) showError(error);
  }
  if (context.isCurrent()) document.body.dataset.page = page.name; // tests wait on this: the page has rendered
}

async function logout() {
  try {
    await api.logout();
  } catch {
    // logged out either way
  }
  session.next = HOME;
  setLoggedIn(null);
  location.hash = "#/login";
}

async function boot() {
  document.querySelector("[data-testid=logout]").addEventListener("click", logout);
  try {
    setLoggedIn(await api.me());
  } catch (error) {
    if (error.status !== 401) { // a 401 has already gone through goToLogin, which kept the page asked for
      showError(error);
      session.next = location.hash && !location.hash.startsWith("#/login") ? location.hash : HOME;
    }
    setLoggedIn(null);
  }
  window.addEventListener("hashchange", route);
  if (!session.user && !location.hash.startsWith("#/login")) location.hash = "#/login";
  else if (!location.hash) location.hash = HOME;
  else await route();
}

boot();
