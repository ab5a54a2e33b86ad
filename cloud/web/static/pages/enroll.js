// Enroll a person from 1-16 photos (JPEG or PNG), optionally straight onto the watchlist.

import {api, DEFAULT_WATCH_THRESHOLD} from "../api.js";
import {clearError, el, identityHash, navigate, P_SAME_HELP, readAsDataUrl, showError} from "../dom.js";

const MAX_PHOTOS = 16;

export async function renderEnroll(container) {
  const name = el("input", {type: "text", name: "display_name", placeholder: "e.g. Visitor 12", testid: "enroll-name"});
  const photos = el("input", {type: "file", name: "photos", accept: "image/jpeg,image/png", multiple: true,
    testid: "enroll-photos"});
  const watch = el("input", {type: "checkbox", testid: "enroll-watch"});
  const threshold = el("input", {type: "number", min: "0", max: "1", step: "any", title: P_SAME_HELP,
    value: String(DEFAULT_WATCH_THRESHOLD), testid: "enroll-threshold", disabled: true});
  watch.addEventListener("change", () => { threshold.disabled = !watch.checked; });
  const previews = el("div", {class: "previews previews-left"});
  photos.addEventListener("change", async () => {
    const files = [...photos.files].slice(0, MAX_PHOTOS);
    const urls = await Promise.all(files.map(readAsDataUrl)).catch(() => []);
    previews.replaceChildren(...urls.map((url, i) => el("img", {src: url, alt: files[i].name})));
  });
  const submit = el("button", {type: "submit", class: "primary", testid: "enroll-submit"}, "Enroll");

  const form = el("form", {class: "panel enroll-form", testid: "enroll-form", onsubmit: async (event) => {
    event.preventDefault();
    clearError();
    const files = [...photos.files];
    if (!files.length) {
      showError("choose at least one photo");
      return;
    }
    if (files.length > MAX_PHOTOS) {
      showError(`at most ${MAX_PHOTOS} photos, got ${files.length}`);
      return;
    }
    const data = new FormData();
    files.forEach((file) => data.append("photos", file, file.name));
    if (name.value.trim()) data.append("display_name", name.value.trim());
    if (watch.checked) data.append("watchlist_threshold", threshold.value);
    submit.disabled = true;
    try {
      const identity = await api.enroll(data);
      navigate(identityHash(identity.identity_id));
    } catch (error) {
      if (error.status !== 401) showError(error);
    } finally {
      submit.disabled = false;
    }
  }},
  el("label", {}, "Name", name),
  el("label", {}, `Photos of the person (1 to ${MAX_PHOTOS}, JPEG or PNG, one person per photo)`, photos),
  previews,
  el("div", {class: "row"}, el("label", {class: "inline"}, watch, "Watch this person"),
    el("label", {class: "inline", title: P_SAME_HELP}, "alert at P(same) ≥", threshold)),
  el("div", {}, submit));

  container.append(el("h1", {}, "Enroll a person"),
    el("p", {class: "muted"}, "The hub embeds the photos with every edge's model and pushes the new identity to the "
      + "edges' galleries."),
    form);
}
