// Search page: a photo (drag and drop or file picker), an identity id or a sighting id → the hub's stored
// sightings of that person (by identity or sighting; shown at once), then hits from every edge. Or a description
// (text and attribute filters, pages/describe.js) → the edges' hits with what matched.

import {api, checkThreshold, DEFAULT_WATCH_THRESHOLD} from "../api.js";
import {descriptionNotes, describeForm, matchedAttributes, RAW_SCORE_HELP, textScoreFacts} from "./describe.js";
import {chip, clearError, el, facts, formatPSame, guarded, identityHash, navigate, P_SAME_HELP, pSame, pSameHelp,
  readAsDataUrl, showError, timeEl} from "../dom.js";

// The last search survives a visit to another page (back from an identity shows the same results).
const state = {result: null, stored: null, description: "", previews: [], pending: null, topK: 20, deadline: 10,
  threshold: DEFAULT_WATCH_THRESHOLD, searches: 0};

/** Open the search page and run a search by identity or sighting (from other pages). */
export function searchFor(kind, value) {
  state.pending = {kind, value: String(value)};
  location.hash = "#/search";
}

function countOf(value) {
  if (Array.isArray(value)) return value.length;
  if (value && typeof value === "object") return Object.keys(value).length;
  return Number(value) || 0;
}

function summary(result) {
  const failed = result.edges_failed && typeof result.edges_failed === "object" ? result.edges_failed : {};
  const failures = Object.entries(failed).map(([edge, error]) => `${edge}: ${error}`);
  if (!countOf(result.edges_asked)) {
    return el("div", {class: "summary row", testid: "search-summary"},
      el("strong", {class: "warning", testid: "no-edges"}, "No edge is connected to the hub"),
      el("span", {class: "muted"}, state.stored !== null ? "only the hub's stored sightings are shown"
        : "nothing was searched: start an edge, or search by identity or sighting for what the hub holds"));
  }
  return el("div", {class: "summary row", testid: "search-summary"},
    el("strong", {}, `${result.hits.length} hit${result.hits.length === 1 ? "" : "s"} from the edges`),
    chip(result.complete ? "complete" : "partial", result.complete ? "same" : "unjudged", "search-complete"),
    el("span", {class: "muted"}, `edges asked ${countOf(result.edges_asked)}, answered ${countOf(result.edges_answered)}`
      + `, partial ${countOf(result.edges_partial)}, silent ${countOf(result.edges_silent)}`
      + `, failed ${failures.length}`),
    failures.length ? el("span", {class: "muted small", testid: "search-failures"}, failures.join("; ")) : null);
}

function scoreFacts(item) {
  return [
    ["stage 1", el("span", {title: `the edge model's P(same). ${P_SAME_HELP}`}, formatPSame(item.stage1_p_same))],
    ["stage 2", el("span", {title: `the hub judge's P(same). ${P_SAME_HELP}`},
      item.stage2_p_same === null || item.stage2_p_same === undefined ? "unjudged" : formatPSame(item.stage2_p_same))],
  ];
}

function hitCard(hit, watched, refresh) {
  const name = hit.display_name || hit.identity_id || "unknown person";
  const watchButton = hit.identity_id ? el("button", {type: "button", class: "small", testid: "result-watch",
    disabled: watched.has(hit.identity_id),
    onclick: async (event) => {
      event.stopPropagation();
      const problem = checkThreshold(state.threshold);
      if (problem) {
        showError(problem);
        return;
      }
      const done = await guarded(() => api.watch(hit.identity_id, state.threshold));
      if (done) {
        watched.add(hit.identity_id);
        refresh();
      }
    }}, watched.has(hit.identity_id) ? "Watching" : "Watch this person") : null;
  const saveButton = !hit.identity_id && hit.sighting_id !== null && hit.sighting_id !== undefined
    ? el("button", {type: "button", class: "small", testid: "result-save", onclick: async (event) => {
      event.stopPropagation();
      const identity = await guarded(() => api.enrollFromSighting(hit.sighting_id));
      if (identity) navigate(identityHash(identity.identity_id));
    }}, "Save as identity") : null;
  const open = () => {
    if (hit.identity_id) navigate(identityHash(hit.identity_id));
  };
  const described = Boolean(hit.score_kind); // a text search: raw scores, not P(same)
  return el("article", {class: `card${hit.identity_id ? " clickable" : ""}`, testid: "result", onclick: open,
    dataset: {identityId: hit.identity_id || "", cameraId: hit.camera_id, edgeId: hit.edge_id, verdict: hit.verdict,
      rank: String(hit.rank)}},
  el("div", {class: "crop"}, el("img", {src: hit.crop, alt: `crop ${hit.rank} from ${hit.camera_id}`})),
  el("div", {class: "body"},
    el("div", {class: "row"}, el("span", {class: "title", title: name}, `#${hit.rank} ${name}`)),
    described
      ? el("div", {class: "row"}, el("span", {testid: "result-score", title: RAW_SCORE_HELP},
        `match ${hit.score === null || hit.score === undefined ? "—" : hit.score.toFixed(2)} (raw)`))
      : el("div", {class: "row"}, chip(hit.verdict, hit.verdict, "result-verdict"),
        el("span", {testid: "result-p-same"}, pSame(hit.p_same))),
    described ? matchedAttributes(hit) : null,
    facts([
      ["camera", hit.camera_id],
      ["site", hit.site || "—"],
      ["edge", hit.edge_id],
      ["seen", timeEl(hit.start_s, hit.end_s)],
      ...(described ? textScoreFacts(hit) : scoreFacts(hit)),
    ]),
    el("div", {class: "actions"}, watchButton, saveButton)));
}

function storedCard(sighting) {
  const name = sighting.display_name || sighting.identity_id || "unknown person";
  const open = () => {
    if (sighting.identity_id) navigate(identityHash(sighting.identity_id));
  };
  return el("article", {class: `card${sighting.identity_id ? " clickable" : ""}`, testid: "stored-sighting",
    onclick: open, dataset: {sightingId: String(sighting.sighting_id), identityId: sighting.identity_id || "",
      cameraId: sighting.camera_id}},
  el("div", {class: "crop"}, el("img", {src: sighting.crop_url, alt: `sighting ${sighting.sighting_id}`,
    loading: "lazy"})),
  el("div", {class: "body"},
    el("div", {class: "row"}, el("span", {class: "title", title: name}, `${name} · sighting ${sighting.sighting_id}`)),
    el("div", {class: "row"}, pSame(sighting.p_same)),
    facts([
      ["camera", sighting.camera_id],
      ["site", sighting.site || "—"],
      ["edge", sighting.edge_id],
      ["seen", timeEl(sighting.start_s, sighting.end_s)],
      ...scoreFacts(sighting),
    ])));
}

function storedSection(stored) {
  if (stored === null) return null;
  return el("section", {testid: "stored-section"},
    el("h2", {}, `Stored at the hub: ${stored.length} sighting${stored.length === 1 ? "" : "s"}`),
    stored.length
      ? el("div", {class: "grid", testid: "stored-sightings"}, stored.map(storedCard))
      : el("p", {class: "muted", testid: "no-stored"}, "The hub holds no sighting of this person yet."));
}

function renderResults(target, watched) {
  const result = state.result;
  if (!result) {
    target.replaceChildren(storedSection(state.stored) || "");
    return;
  }
  const refresh = () => renderResults(target, watched);
  const edgesAsked = countOf(result.edges_asked) > 0;
  target.replaceChildren(
    el("p", {class: "muted small", testid: "search-query"}, state.description),
    storedSection(state.stored) || "",
    el("h2", {}, "On the edges"),
    descriptionNotes(result) || "",
    summary(result),
    result.hits.length
      ? el("div", {class: "grid", testid: "results"}, result.hits.map((hit) => hitCard(hit, watched, refresh)))
      : edgesAsked ? el("p", {class: "muted", testid: "no-results"}, "No edge found anyone close enough.") : "",
    pSameHelp());
}

/** The hub's stored sightings of the person asked for: an identity's, or a sighting's person's (itself alone when
 * nobody knew them). Oldest-first lists from the API are shown newest first. */
async function storedSightings(kind, value) {
  if (kind === "identity") return (await api.identitySightings(value)).slice().reverse();
  const sighting = await api.sighting(value);
  if (!sighting.identity_id) return [sighting];
  return (await api.identitySightings(sighting.identity_id)).slice().reverse();
}

export async function renderSearch(container, context) {
  const results = el("div", {testid: "search-results"});
  const status = el("span", {class: "muted", testid: "search-status"});
  const watched = new Set();
  const previews = el("div", {class: "previews", testid: "previews"});

  const run = async (form, description, by = null) => {
    const mine = ++state.searches; // a slower, older search must not overwrite a newer one
    form.append("top_k", String(state.topK));
    form.append("deadline_s", String(state.deadline));
    clearError();
    status.textContent = `searching the edges (up to ${state.deadline} s)…`;
    container.dataset.searching = "true";
    state.result = null;
    state.stored = null;
    renderResults(results, watched);
    if (by) { // what the hub holds comes first, while the edges are asked
      storedSightings(by.kind, by.value).then((stored) => {
        if (mine !== state.searches || state.result) return;
        state.stored = stored;
        if (context.isCurrent()) renderResults(results, watched);
      }).catch(() => {}); // the search itself reports a bad id
    }
    try {
      const result = await api.search(form);
      if (mine !== state.searches) return;
      state.result = result;
      state.stored = by ? result.sightings : null;
      state.description = description;
      if (context.isCurrent()) renderResults(results, watched);
    } catch (error) {
      if (error.status !== 401 && mine === state.searches && context.isCurrent()) showError(error);
    } finally {
      if (mine === state.searches) {
        status.textContent = "";
        delete container.dataset.searching;
      }
    }
  };

  const searchPhotos = (files) => {
    const images = [...files].filter((file) => file.size > 0);
    if (!images.length) {
      showError("choose a JPEG or PNG photo");
      return;
    }
    Promise.all(images.slice(0, 4).map(readAsDataUrl)).then((urls) => {
      state.previews = urls;
      previews.replaceChildren(...urls.map((url) => el("img", {src: url, alt: "query photo"})));
    }).catch(() => previews.replaceChildren());
    const form = new FormData();
    images.forEach((file) => form.append("photos", file, file.name));
    run(form, `photo: ${images.map((file) => file.name).join(", ")}`);
  };

  const picker = el("input", {type: "file", accept: "image/jpeg,image/png", multiple: true, hidden: true,
    testid: "photo-input", onchange: () => {
      if (picker.files.length) searchPhotos(picker.files);
      picker.value = "";
    }});
  const dropzone = el("div", {class: "dropzone", testid: "dropzone", tabindex: "0", role: "button",
    onclick: () => picker.click(),
    onkeydown: (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        picker.click();
      }
    },
    ondragover: (event) => { event.preventDefault(); dropzone.classList.add("dragging"); },
    ondragleave: () => dropzone.classList.remove("dragging"),
    ondrop: (event) => {
      event.preventDefault();
      dropzone.classList.remove("dragging");
      searchPhotos(event.dataTransfer.files);
    }},
  el("strong", {}, "Drop a photo of a person here"), el("br"), "or click to choose one (JPEG or PNG)", previews);
  state.previews.forEach((url) => previews.append(el("img", {src: url, alt: "query photo"})));

  const byField = (kind, label, testid) => {
    const input = el("input", {type: "text", inputmode: kind === "sighting" ? "numeric" : undefined,
      pattern: kind === "sighting" ? "[0-9]+" : undefined, placeholder: label, testid: `${testid}-input`,
      required: true});
    return el("form", {testid: `${testid}-form`, onsubmit: (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      const form = new FormData();
      form.append(kind === "sighting" ? "sighting_id" : "identity_id", value);
      run(form, `${kind} ${value}`, {kind, value});
    }}, el("label", {}, label, input), el("button", {type: "submit", testid: `${testid}-submit`}, "Search"));
  };

  const numberField = (label, key, testid, props) => el("label", {title: props.title}, label,
    el("input", {type: "number", testid, value: String(state[key]), ...props, onchange: (event) => {
      const value = Number(event.target.value);
      if (Number.isFinite(value) && (value > 0 || (key === "threshold" && value === 0))) state[key] = value;
    }}));

  container.append(
    el("h1", {}, "Search"),
    el("div", {class: "panel"},
      dropzone,
      picker,
      el("div", {class: "row search-by"},
        byField("identity", "identity id", "search-identity"),
        byField("sighting", "sighting id", "search-sighting"),
        el("span", {class: "spacer"}),
        numberField("results per edge", "topK", "search-top-k", {min: "1", max: "200", step: "1"}),
        numberField("deadline (s)", "deadline", "search-deadline", {min: "1", max: "60", step: "1"}),
        numberField("watch: alert at P(same) ≥", "threshold", "watch-threshold",
          {min: "0", max: "1", step: "any", title: P_SAME_HELP})),
      describeForm(run),
      el("div", {class: "row"}, status)),
    results);

  const list = await guarded(() => api.watchlist());
  (list || []).forEach((identity) => watched.add(identity.identity_id));
  renderResults(results, watched);
  if (state.pending) {
    const {kind, value} = state.pending;
    state.pending = null;
    const form = new FormData();
    form.append(kind === "sighting" ? "sighting_id" : "identity_id", value);
    run(form, `${kind} ${value}`, {kind, value});
  }
}
