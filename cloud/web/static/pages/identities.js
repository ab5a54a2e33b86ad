// Identities, the watchlist, and the unknown people (sightings nobody in the gallery matched).

import {api} from "../api.js";
import {chip, el, formatPSame, formatTime, guarded, identityHash, navigate, P_SAME_HELP, timeEl} from "../dom.js";
import {searchFor} from "./search.js";

const open = (identity) => () => navigate(identityHash(identity.identity_id));

function watchlistTable(watchlist, reload) {
  if (!watchlist.length) {
    return el("p", {class: "muted", testid: "watchlist-empty"},
      "Nobody is watched. Open an identity (or a search result) and press “Watch this person”.");
  }
  return el("div", {class: "table-wrap"}, el("table", {testid: "watchlist"},
    el("thead", {}, el("tr", {}, [["", ""], ["name", ""], ["identity", ""], ["alert at P(same) ≥", P_SAME_HELP],
      ["last seen", ""], ["sightings", ""], ["", ""]].map(([title, help]) => el("th", {title: help || undefined}, title)))),
    el("tbody", {}, watchlist.map((identity) => el("tr", {class: "clickable", testid: "watchlist-row",
      dataset: {identityId: identity.identity_id}, onclick: open(identity)},
    el("td", {}, identity.crop_urls.length ? el("img", {class: "thumb", src: identity.crop_urls[0], alt: ""}) : ""),
    el("td", {}, identity.display_name),
    el("td", {}, el("code", {}, identity.identity_id)),
    el("td", {title: P_SAME_HELP}, formatPSame(identity.watchlist_threshold)),
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

function unknownCard(sighting, reload) {
  const name = el("input", {type: "text", placeholder: "name (optional)", testid: "unknown-name",
    onclick: (event) => event.stopPropagation()});
  return el("article", {class: "card", testid: "unknown-sighting", dataset: {sightingId: String(sighting.sighting_id),
    cameraId: sighting.camera_id}},
  el("div", {class: "crop"}, el("img", {src: sighting.crop_url, alt: `unknown person, sighting ${sighting.sighting_id}`,
    loading: "lazy"})),
  el("div", {class: "body"},
    el("div", {class: "title"}, `Unknown person · sighting ${sighting.sighting_id}`),
    el("div", {class: "muted small"}, `${sighting.camera_id} · ${sighting.edge_id} · `, timeEl(sighting.start_s,
      sighting.end_s)),
    el("div", {class: "actions"},
      el("button", {type: "button", class: "small", testid: "unknown-search",
        onclick: () => searchFor("sighting", sighting.sighting_id)}, "Search for this person"),
      name,
      el("button", {type: "button", class: "small", testid: "unknown-save", onclick: async () => {
        const identity = await guarded(() => api.enrollFromSighting(sighting.sighting_id, name.value.trim()));
        if (identity) navigate(identityHash(identity.identity_id));
        else reload();
      }}, "Save as identity"))));
}

function unknownSection(sightings, reload) {
  if (!sightings.length) {
    return el("p", {class: "muted", testid: "unknown-empty"},
      "Nobody unknown: every person the edges sent up was confirmed as someone or became an identity.");
  }
  return el("div", {},
    el("p", {class: "muted small"}, "People the hub could not confirm as anyone in the gallery (and made no new "
      + "identity of). Search for them, or save one as an identity: the edges then recognise them."),
    el("div", {class: "grid", testid: "unknown-sightings"}, sightings.map((s) => unknownCard(s, reload))));
}

export async function renderIdentities(container, context) {
  const filter = el("input", {type: "text", placeholder: "filter by name or id", testid: "identities-filter"});
  const sourceSelect = el("select", {testid: "identities-source"},
    ["all", "photo", "sighting", "auto"].map((source) => el("option", {value: source}, source)));
  const grid = el("div", {class: "grid", testid: "identities"});
  const watchSection = el("div", {testid: "watchlist-section"});
  const unknownSightings = el("div", {testid: "unknown-section"});
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
    const answer = await guarded(() => Promise.all([api.identities(), api.watchlist(), api.unknownSightings()]));
    if (!answer || !context.isCurrent()) return;
    const [all, watchlist, unknown] = answer;
    identities = all.slice().sort((a, b) => (b.last_seen_s || b.created_s) - (a.last_seen_s || a.created_s));
    watchSection.replaceChildren(watchlistTable(watchlist, reload));
    unknownSightings.replaceChildren(unknownSection(unknown, reload));
    drawGrid();
  };
  filter.addEventListener("input", drawGrid);
  sourceSelect.addEventListener("change", drawGrid);

  container.append(
    el("div", {class: "row"}, el("h1", {}, "Identities & watchlist"), el("span", {class: "spacer"}),
      el("a", {class: "button", href: "#/enroll", testid: "enroll-link"}, "Enroll from photos")),
    el("h2", {}, "Watchlist"), watchSection,
    el("h2", {}, "Unknown people"), unknownSightings,
    el("div", {class: "row"}, el("h2", {}, "All identities"), el("span", {class: "spacer"}), filter,
      el("label", {class: "inline"}, "source", sourceSelect)),
    grid);
  await reload();
}
