// Identities and the watchlist.

import {api} from "../api.js";
import {chip, el, formatNumber, formatTime, guarded, identityHash, navigate} from "../dom.js";

const open = (identity) => () => navigate(identityHash(identity.identity_id));

function watchlistTable(watchlist, reload) {
  if (!watchlist.length) {
    return el("p", {class: "muted", testid: "watchlist-empty"},
      "Nobody is watched. Open an identity (or a search result) and press “Watch this person”.");
  }
  return el("div", {class: "table-wrap"}, el("table", {testid: "watchlist"},
    el("thead", {}, el("tr", {}, ["", "name", "identity", "threshold", "last seen", "sightings", ""]
      .map((title) => el("th", {}, title)))),
    el("tbody", {}, watchlist.map((identity) => el("tr", {class: "clickable", testid: "watchlist-row",
      dataset: {identityId: identity.identity_id}, onclick: open(identity)},
    el("td", {}, identity.crop_urls.length ? el("img", {class: "thumb", src: identity.crop_urls[0], alt: ""}) : ""),
    el("td", {}, identity.display_name),
    el("td", {}, el("code", {}, identity.identity_id)),
    el("td", {}, formatNumber(identity.watchlist_threshold, 2)),
    el("td", {}, formatTime(identity.last_seen_s)),
    el("td", {}, String(identity.sighting_count)),
    el("td", {}, el("button", {type: "button", class: "small", testid: "watchlist-remove", onclick: async (event) => {
      event.stopPropagation();
      if (await guarded(() => api.unwatch(identity.identity_id))) reload();
    }}, "Stop watching")))))));
}

function identityCard(identity) {
  const watching = identity.watchlist_threshold !== null && identity.watchlist_threshold !== undefined;
  return el("article", {class: "card clickable", testid: "identity-card", dataset: {identityId: identity.identity_id,
    source: identity.source}, onclick: open(identity)},
  el("div", {class: "crop"}, identity.crop_urls.length
    ? el("img", {src: identity.crop_urls[0], alt: `crop of ${identity.display_name}`, loading: "lazy"})
    : el("span", {class: "muted"}, "no crop")),
  el("div", {class: "body"},
    el("div", {class: "title", title: identity.display_name}, identity.display_name || identity.identity_id),
    el("div", {class: "row"}, chip(identity.source), watching ? chip("watched", "watch") : null),
    el("div", {class: "muted small"}, `${identity.sighting_count} sightings · last ${formatTime(identity.last_seen_s)}`)));
}

export async function renderIdentities(container, context) {
  const filter = el("input", {type: "text", placeholder: "filter by name or id", testid: "identities-filter"});
  const sourceSelect = el("select", {testid: "identities-source"},
    ["all", "photo", "sighting", "auto"].map((source) => el("option", {value: source}, source)));
  const grid = el("div", {class: "grid", testid: "identities"});
  const watchSection = el("div", {testid: "watchlist-section"});
  let identities = [];

  const drawGrid = () => {
    const text = filter.value.trim().toLowerCase();
    const source = sourceSelect.value;
    const shown = identities.filter((identity) => (source === "all" || identity.source === source)
      && (!text || identity.display_name.toLowerCase().includes(text) || identity.identity_id.toLowerCase().includes(text)));
    grid.replaceChildren(...shown.map(identityCard));
    if (!shown.length) grid.append(el("p", {class: "muted", testid: "identities-empty"}, "No identities."));
  };
  const reload = async () => {
    const answer = await guarded(() => Promise.all([api.identities(), api.watchlist()]));
    if (!answer || !context.isCurrent()) return;
    const [all, watchlist] = answer;
    identities = all.slice().sort((a, b) => (b.last_seen_s || b.created_s) - (a.last_seen_s || a.created_s));
    watchSection.replaceChildren(watchlistTable(watchlist, reload));
    drawGrid();
  };
  filter.addEventListener("input", drawGrid);
  sourceSelect.addEventListener("change", drawGrid);

  container.append(
    el("div", {class: "row"}, el("h1", {}, "Identities & watchlist"), el("span", {class: "spacer"}),
      el("a", {class: "button", href: "#/enroll", testid: "enroll-link"}, "Enroll from photos")),
    el("h2", {}, "Watchlist"), watchSection,
    el("div", {class: "row"}, el("h2", {}, "All identities"), el("span", {class: "spacer"}), filter,
      el("label", {class: "inline"}, "source", sourceSelect)),
    grid);
  await reload();
}
