// DOM helpers: elements are built with createElement and text nodes, never
// from markup strings, so nothing an API returns can become markup.

import { ApiError } from "./api.js";

/** h("button", { class: "primary", onclick: f }, "Save") */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let ids = 0;
/** A fresh element id, for label/control pairs. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled control: `control` gets an id and the label points at it. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid("f");
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = uid("hint");
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("div", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** A readable sentence (and list) from an API error. */
export function errorBox(e) {
  const details = e instanceof ApiError ? e.details : [];
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("strong", {}, e instanceof ApiError && e.status === 404 ? "Not found: " : "Error: "),
    e.message || String(e),
    details.length ? h("ul", {}, details.map((d) => h("li", {}, `${d.field}: ${d.message}`))) : null,
  );
}

/** A short message in the live region at the top of the page. */
export function notify(message, isError = false) {
  const region = document.getElementById("notice");
  replace(region, h("p", { class: isError ? "error" : "" }, message));
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => region.replaceChildren(), isError ? 12000 : 6000);
}

/** Runs an action behind a button: disables it meanwhile, reports failures. */
export async function busy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } catch (e) {
    notify(e.message || String(e), true);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/** A modal dialog; resolves with the value of the button that closed it. */
function modal(title, body, buttons) {
  return new Promise((resolve) => {
    const titleId = uid("dlg");
    const dlg = h(
      "dialog",
      { "aria-labelledby": titleId },
      h("h2", { id: titleId }, title),
      body,
      h(
        "div",
        { class: "row end" },
        buttons.map((b) =>
          h("button", { class: b.class || "", type: "button", value: b.value, onclick: () => dlg.close(b.value) }, b.label),
        ),
      ),
    );
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(dlg.returnValue);
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Asks before something that cannot be undone. */
export async function confirmAction(title, text, confirmLabel) {
  const answer = await modal(title, h("p", {}, text), [
    { label: "Cancel", value: "cancel" },
    { label: confirmLabel, value: "yes", class: "danger" },
  ]);
  return answer === "yes";
}

/** Shows a secret once, with a copy button. */
export async function showOnce(title, label, secret) {
  const input = h("input", { id: uid("secret"), type: "text", readonly: true, value: secret, class: "mono" });
  const copy = h("button", { type: "button" }, "Copy");
  copy.addEventListener("click", async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(secret);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select and copy";
    }
  });
  await modal(
    title,
    [
      h("p", {}, "Copy it now: it is not shown again."),
      h("div", { class: "field" }, h("label", { for: input.id }, label), h("div", { class: "secret" }, input, copy)),
    ],
    [{ label: "Done", value: "done", class: "primary" }],
  );
}

/** "2026-06-15 12:00:03" in the viewer's time zone. */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}` }, text.replace("_", " "));
}

/** A table inside a scrolling wrapper, with a caption for screen readers. */
export function table(caption, headers, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows),
    ),
  );
}
