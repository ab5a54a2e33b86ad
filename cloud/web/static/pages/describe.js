// Search by description (issue 15): a text box and attribute filters for the search page, and what a text
// search's result cards show: the raw scores of both stages, which attributes matched, the colours read.

import {el, showError} from "../dom.js";

const ATTRIBUTES = [["backpack", "backpack"], ["bag", "bag"], ["hat", "hat"], ["long_sleeves", "long sleeves"],
  ["long_trousers", "long trousers"], ["long_hair", "long hair"], ["coat_jacket", "coat / jacket"]];
const COLOURS = ["black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown"];
export const RAW_SCORE_HELP = "A raw match score from 0 to 1 (higher matches better). Descriptions have no "
  + "calibration, so this is not a P(same).";

// The form's values survive a visit to another page.
const chosen = {text: "", gender: "", upper_colour: "", lower_colour: ""};

function select(name, label, options) {
  return el("label", {}, label, el("select", {testid: `filter-${name}`, onchange: (event) => {
    chosen[name] = event.target.value;
  }}, options.map(([value, text]) => el("option", {value, selected: chosen[name] === value}, text))));
}

/** The description form; `run(form, label)` sends it as a search. */
export function describeForm(run) {
  const text = el("input", {type: "text", testid: "describe-text", maxlength: "1000", value: chosen.text,
    placeholder: "e.g. woman, red top, black trousers, backpack", oninput: (event) => {
      chosen.text = event.target.value;
    }});
  const yesNo = [["", "any"], ["true", "yes"], ["false", "no"]];
  const colours = [["", "any"], ...COLOURS.map((c) => [c, c])];
  return el("form", {class: "describe", testid: "describe-form", onsubmit: (event) => {
    event.preventDefault();
    const form = new FormData();
    const words = [];
    if (chosen.text.trim()) {
      form.append("text", chosen.text.trim());
      words.push(chosen.text.trim());
    }
    if (chosen.gender) {
      form.append("male", chosen.gender === "man" ? "true" : "false");
      words.push(chosen.gender);
    }
    for (const [name, label] of ATTRIBUTES) {
      if (!chosen[name]) continue;
      form.append(name, chosen[name]);
      words.push(chosen[name] === "true" ? label : `no ${label}`);
    }
    for (const part of ["upper", "lower"]) {
      const colour = chosen[`${part}_colour`];
      if (!colour) continue;
      form.append(`${part}_colour`, colour);
      words.push(`${part} ${colour}`);
    }
    if (!words.length) {
      showError("type a description or choose at least one attribute");
      return;
    }
    run(form, `description: ${words.join("; ")}`);
  }},
  el("label", {class: "grow"}, "description", text),
  el("div", {class: "row filters"},
    select("gender", "gender", [["", "any"], ["man", "man"], ["woman", "woman"]]),
    ...ATTRIBUTES.map(([name, label]) => select(name, label, yesNo)),
    select("upper_colour", "top colour", colours),
    select("lower_colour", "bottoms colour", colours),
    el("button", {type: "submit", testid: "describe-submit"}, "Search by description")));
}

function raw(value) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(2);
}

/** The facts of a text hit: both stages' raw scores (the judge's is empty when it cannot read). */
export function textScoreFacts(hit) {
  return [
    ["text score", el("span", {title: `stage one: the edge's attribute match (mixed with its text-image model's, where it has one). ${RAW_SCORE_HELP}`,
      testid: "result-text-score"}, raw(hit.text_score))],
    ["judge", el("span", {title: `stage two: 1 - the judge's "No" probability for the description. ${RAW_SCORE_HELP}`,
      testid: "result-judge-score"}, hit.judge_score === null || hit.judge_score === undefined
      ? "not judged" : raw(hit.judge_score))],
  ];
}

/** Which of the description's attributes the hit matched (✓) or not (✗), and the colours the edge read. */
export function matchedAttributes(hit) {
  const colours = hit.attributes
    ? ["upper", "lower"].map((part) => {
      const reading = hit.attributes[part];
      return el("span", {class: "colour", testid: `result-colour-${part}`, dataset: {colour: reading?.name || ""}},
        reading ? el("i", {class: `swatch swatch-${reading.name}`}) : null,
        `${part === "upper" ? "top" : "bottoms"}: ${reading ? `${reading.name} (${raw(reading.confidence)})` : "—"}`);
    })
    : [el("span", {class: "muted small"}, "no attributes recorded")];
  return el("div", {class: "matched", testid: "result-matched"},
    el("div", {class: "row"}, ...(hit.matched || []).map((m) => el("span", {
      class: `chip ${m.matched ? "same" : "different"}`, testid: "result-constraint",
      dataset: {constraint: m.constraint, matched: String(m.matched)},
      title: `from "${m.source}": ${raw(m.probability)} under the edge's attributes`,
    }, `${m.matched ? "✓" : "✗"} ${m.constraint}`))),
    el("div", {class: "row small"}, ...colours));
}

/** Above a text search's results: what was understood, the words ignored, and the hub's and edges' notes. */
export function descriptionNotes(result) {
  if (!result.text) return null;
  const ignored = result.text.ignored || [];
  return el("div", {class: "panel small", testid: "search-understood"},
    el("div", {}, el("strong", {}, "Understood: "), result.text.constraints.join(", ")),
    ignored.length ? el("div", {class: "warning", testid: "search-ignored"},
      `Ignored (not searched): ${ignored.map((w) => `"${w}"`).join(", ")}`) : null,
    ...(result.notes || []).map((note) => el("div", {class: "muted", testid: "search-note"}, note)));
}
