// One identity: reference crops, the timeline of its sightings, the sightings across cameras, the watchlist.

import {api, checkThreshold, DEFAULT_WATCH_THRESHOLD} from "../api.js";
import {chip, clearError, el, formatPSame, formatTime, guarded, P_SAME_HELP, pSameHelp, showError, timeEl, timeTitle}
  from "../dom.js";
import {searchFor} from "./search.js";

function watchBox(identity, onChange) {
  const watching = identity.watchlist_threshold !== null && identity.watchlist_threshold !== undefined;
  const threshold = el("input", {type: "number", min: "0", max: "1", step: "any", testid: "watch-threshold-input",
    title: P_SAME_HELP, value: String(watching ? identity.watchlist_threshold : DEFAULT_WATCH_THRESHOLD)});
  const save = async (action) => {
    clearError();
    const updated = await guarded(action);
    if (updated) onChange(updated);
  };
  return el("div", {class: "panel watch-box", testid: "watch-box"},
    el("div", {},
      el("h3", {}, "Watchlist"),
      el("div", {testid: "watch-status"}, watching
        ? chip(`watching (alert at P(same) ≥ ${formatPSame(identity.watchlist_threshold)})`, "watch")
        : chip("not watched"))),
    el("label", {title: P_SAME_HELP}, "alert when a sighting's P(same) (0–1) reaches", threshold),
    el("button", {type: "button", class: "primary", testid: "watch-button", onclick: () => {
      const value = threshold.value.trim() === "" ? NaN : Number(threshold.value);
      const problem = checkThreshold(value);
      if (problem) {
        showError(problem);
        return;
      }
      save(() => api.watch(identity.identity_id, value));
    }}, watching ? "Update threshold" : "Watch this person"),
    watching ? el("button", {type: "button", testid: "unwatch-button",
      onclick: () => save(() => api.unwatch(identity.identity_id))}, "Stop watching") : null);
}

function renameForm(identity, onChange) {
  const name = el("input", {type: "text", value: identity.display_name, testid: "rename-input", required: true});
  return el("form", {class: "row", testid: "rename-form", onsubmit: async (event) => {
    event.preventDefault();
    clearError();
    const updated = await guarded(() => api.rename(identity.identity_id, name.value.trim()));
    if (updated) onChange(updated);
  }}, name, el("button", {type: "submit", class: "small"}, "Rename"));
}

const P_SAME_COLUMNS = [["P(same)", "the stages fused: what the watchlist reads"], ["stage 1", "the edge model's P(same)"],
  ["stage 2", "the hub judge's P(same)"]];

function sightingsTable(sightings) {
  if (!sightings.length) return el("p", {class: "muted", testid: "no-sightings"}, "No sightings yet.");
  const cameras = new Set(sightings.map((s) => `${s.edge_id}/${s.camera_id}`));
  const headers = [["", ""], ["sighting", ""], ["edge", ""], ["site", ""], ["camera", ""], ["seen", ""],
    ...P_SAME_COLUMNS.map(([title, what]) => [title, `${what}. ${P_SAME_HELP}`])];
  return el("div", {},
    el("p", {class: "muted small"}, `${sightings.length} sighting${sightings.length === 1 ? "" : "s"} on `
      + `${cameras.size} camera${cameras.size === 1 ? "" : "s"}`),
    el("div", {class: "table-wrap"}, el("table", {testid: "sightings"},
      el("thead", {}, el("tr", {}, headers.map(([title, help]) => el("th", {title: help || undefined}, title)))),
      el("tbody", {}, sightings.slice().reverse().map((s) => el("tr", {testid: "sighting-row",
        dataset: {sightingId: String(s.sighting_id), cameraId: s.camera_id}},
      el("td", {}, el("img", {class: "thumb", src: s.crop_url, alt: `sighting ${s.sighting_id}`, loading: "lazy"})),
      el("td", {}, String(s.sighting_id)),
      el("td", {}, s.edge_id),
      el("td", {}, s.site || "—"),
      el("td", {}, s.camera_id),
      el("td", {testid: "sighting-time"}, timeEl(s.start_s, s.end_s)),
      el("td", {testid: "sighting-p-same", title: P_SAME_HELP}, formatPSame(s.p_same)),
      el("td", {title: P_SAME_HELP}, formatPSame(s.stage1_p_same)),
      el("td", {title: P_SAME_HELP}, formatPSame(s.stage2_p_same))))))),
    pSameHelp());
}

export async function renderIdentity(container, context) {
  const [identityId] = context.params;
  const [identity, sightings] = await Promise.all([api.identity(identityId), api.identitySightings(identityId)]);
  if (!context.isCurrent()) return;

  const draw = (current) => {
    const timelineVersion = `${current.sighting_count}-${current.last_seen_s || 0}`;
    container.replaceChildren(
      el("div", {class: "identity-head", testid: "identity-page", dataset: {identityId: current.identity_id}},
        el("div", {class: "identity-summary"},
          el("h1", {testid: "identity-name"}, current.display_name || current.identity_id),
          el("div", {class: "row muted small"},
            el("code", {testid: "identity-id"}, current.identity_id),
            chip(current.source, "", "identity-source"),
            el("span", {}, `${current.crop_count} reference crop${current.crop_count === 1 ? "" : "s"}`),
            el("span", {}, `${current.sighting_count} sighting${current.sighting_count === 1 ? "" : "s"}`),
            el("span", {title: timeTitle(current.last_seen_s)}, `last seen ${formatTime(current.last_seen_s)}`)),
          el("div", {class: "row identity-actions"},
            renameForm(current, draw),
            el("button", {type: "button", class: "small", testid: "search-this",
              onclick: () => searchFor("identity", current.identity_id)}, "Search the edges for this person"),
            el("button", {type: "button", class: "small danger", testid: "delete-identity", onclick: async () => {
              if (!window.confirm(`Delete ${current.display_name || current.identity_id}?`)) return;
              const done = await guarded(() => api.deleteIdentity(current.identity_id).then(() => true));
              if (done) location.hash = "#/identities";
            }}, "Delete"))),
        watchBox(current, draw)),
      el("h2", {}, "Reference crops"),
      current.crop_urls.length
        ? el("div", {class: "crops", testid: "identity-crops"},
          current.crop_urls.map((url, i) => el("img", {src: url, alt: `reference crop ${i + 1}`})))
        : el("p", {class: "muted"}, "No reference crops."),
      el("h2", {}, "Timeline"),
      el("img", {class: "timeline", testid: "timeline", src: api.timelineUrl(current.identity_id, timelineVersion),
        alt: `timeline of ${current.display_name || current.identity_id}'s sightings per camera`,
        onerror: () => showError(`the timeline of ${current.identity_id} could not be drawn`)}),
      el("h2", {}, "Sightings across cameras"),
      sightingsTable(sightings));
  };
  draw(identity);
}
