// The console's entry: sign-in, the top bar, and hash routes to the views.

import { identify, session, forgetCatalog } from "./api.js";
import { h, replace, field, errorBox, notify } from "./ui.js";
import { webhookList, webhookForm, webhookDetail, catalogView } from "./webhooks.js";
import { deliveryDetail } from "./deliveries.js";
import { appList, appDetail, ingestKeys } from "./admin.js";

const main = document.getElementById("main");

/** Shows `hash`: through the router when it changes, at once when it is current. */
function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

/** The current view's clean-up (timers), run before the next view. */
let stopView = null;

/** `#/webhooks/wh_1` → ["webhooks", "wh_1"]. */
function route() {
  return location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
}

function signInView() {
  const key = h("input", { type: "password", autocomplete: "off", spellcheck: "false", required: true, name: "credential" });
  const error = h("div");
  const submit = h("button", { class: "primary", type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "panel signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", { class: "muted" }, "Paste a device token to manage that device's webhooks, or an admin key (sk_admin_…) to manage your organization."),
    field("Device token or admin key", key, "Kept in this browser tab only, and forgotten when you sign out or close the tab."),
    error,
    submit,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const value = key.value.trim();
    if (!value) return;
    submit.disabled = true;
    error.replaceChildren();
    try {
      const kind = await identify(value);
      session.set(value, kind);
      key.value = "";
      // Back where the tab was when its key stopped working, or to the list.
      go(route().length ? location.hash : "#/webhooks");
    } catch (e) {
      replace(error, errorBox(e.status === 401 ? new Error("That key was not accepted. Check that it is a current device token or admin key.") : e));
      key.focus();
      key.select();
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function topBar(s) {
  const here = route()[0] || "webhooks";
  const link = (path, label) => h("a", { href: `#/${path}`, "aria-current": here === path ? "page" : false }, label);
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (!s) {
    nav.replaceChildren();
    who.replaceChildren();
    return;
  }
  replace(
    nav,
    link("webhooks", s.kind === "admin" ? "Organization webhooks" : "Webhooks"),
    s.kind === "admin" ? [link("apps", "Apps and tokens"), link("ingest-keys", "Ingest keys")] : null,
    link("events", "Event catalog"),
  );
  const out = h("button", { type: "button", class: "link", id: "sign-out" }, "Sign out");
  out.addEventListener("click", () => {
    session.clear();
    forgetCatalog();
    go("#/");
    notify("Signed out.");
  });
  replace(who, h("span", {}, s.kind === "admin" ? "Admin key" : "Device token"), out);
}

async function render() {
  if (stopView) stopView();
  stopView = null;
  const s = session.get();
  topBar(s);
  if (!s) {
    replace(main, signInView());
    main.querySelector("input")?.focus();
    return;
  }
  const [section, id, sub, subId] = route();
  let view;
  try {
    if (section === "apps" && s.kind === "admin") view = id ? appDetail(id) : appList();
    else if (section === "ingest-keys" && s.kind === "admin") view = ingestKeys();
    else if (section === "events") view = catalogView();
    else if (section === "webhooks" && id === "new") view = webhookForm(s, null);
    else if (section === "webhooks" && id && sub === "edit") view = webhookForm(s, id);
    else if (section === "webhooks" && id && sub === "deliveries" && subId) view = deliveryDetail(s, id, subId);
    else if (section === "webhooks" && id) view = webhookDetail(s, id);
    else view = webhookList(s);
  } catch (e) {
    view = { el: errorBox(e) };
  }
  stopView = view.stop || null;
  replace(main, view.el);
}

// A credential that stops working (revoked, deleted) signs the tab out.
window.addEventListener("hookrelay:unauthorized", () => {
  session.clear();
  render();
  notify("Your key is no longer accepted; sign in again.", true);
});
window.addEventListener("hashchange", render);
render();
