// Admin key only: the organization's apps and their device tokens, and
// the organization's ingest keys.

import { call } from "./api.js";
import { h, replace, field, errorBox, notify, busy, confirmAction, showOnce, when, table } from "./ui.js";

/** A list section: a create form and a table, reloaded after each change. */
function listSection({ title, path, createLabel, fields, columns, onCreated, row }) {
  const el = h("section", { "aria-label": title });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const inputs = fields.map((f) => ({ ...f, input: h("input", { type: "text", maxlength: 200, placeholder: f.placeholder || "" }) }));
  const error = h("div");
  const create = h("button", { type: "submit", class: "primary" }, createLabel);
  const form = h("form", { class: "panel" }, inputs.map((f) => field(f.label, f.input, f.hint)), error, create);
  const load = async () => {
    try {
      const list = await call("GET", path);
      replace(body, list.data.length ? table(title, columns, list.data.map((item) => row(item, load))) : h("p", { class: "muted" }, "None yet."));
    } catch (e) {
      replace(body, errorBox(e));
    }
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.replaceChildren();
    const bodyJson = {};
    for (const f of inputs) if (f.input.value.trim()) bodyJson[f.name] = f.input.value.trim();
    await busy(create, async () => {
      try {
        const made = await call("POST", path, bodyJson);
        for (const f of inputs) f.input.value = "";
        await onCreated(made);
        load();
      } catch (e) {
        replace(error, errorBox(e));
      }
    });
  });
  el.append(form, body);
  load();
  return el;
}

function removeButton(label, question, text, path, reload) {
  const b = h("button", { type: "button", class: "danger" }, label);
  b.addEventListener("click", async () => {
    if (!(await confirmAction(question, text, label))) return;
    await busy(b, async () => {
      await call("DELETE", path);
      notify(`${label}: done.`);
      reload();
    });
  });
  return b;
}

export function appList() {
  return {
    el: h(
      "div",
      {},
      h("h1", {}, "Apps and tokens"),
      h("p", { class: "muted" }, "An app is one device of your organization; its tokens let its user manage its webhooks here and through the API."),
      listSection({
        title: "Apps",
        path: "/v1/organization/apps",
        createLabel: "Create app",
        fields: [{ name: "name", label: "App name", placeholder: "support phone" }],
        columns: ["Name", "Device id", "Created", "Actions"],
        onCreated: (app) => notify(`App ${app.name || app.id} created.`),
        row: (app, reload) =>
          h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#/apps/${encodeURIComponent(app.id)}` }, app.name || app.id)),
            h("td", { class: "mono" }, app.id),
            h("td", {}, when(app.created_at)),
            h(
              "td",
              {},
              removeButton("Delete app", "Delete this app?", `${app.name || app.id}: its tokens and webhooks are deleted too.`, `/v1/organization/apps/${encodeURIComponent(app.id)}`, reload),
            ),
          ),
      }),
    ),
  };
}

export function appDetail(appId) {
  const base = `/v1/organization/apps/${encodeURIComponent(appId)}`;
  const title = h("h1", {}, appId);
  const el = h("div", {}, h("p", {}, h("a", { href: "#/apps" }, "← All apps")), title);
  (async () => {
    try {
      const app = await call("GET", base);
      replace(title, `Tokens of ${app.name || app.id}`);
      el.append(
        h("p", { class: "muted mono" }, `Device id ${app.id}`),
        listSection({
          title: "Tokens",
          path: `${base}/tokens`,
          createLabel: "Create token",
          fields: [{ name: "name", label: "Token name", placeholder: "crm integration", hint: "The token itself is shown once." }],
          columns: ["Name", "Id", "Created", "Actions"],
          onCreated: (t) => showOnce("New device token", "Token", t.token),
          row: (t, reload) =>
            h(
              "tr",
              { "data-token": t.id },
              h("td", {}, t.name || "—"),
              h("td", { class: "mono" }, t.id),
              h("td", {}, when(t.created_at)),
              h("td", {}, removeButton("Revoke", "Revoke this token?", "It stops working at once.", `${base}/tokens/${encodeURIComponent(t.id)}`, reload)),
            ),
        }),
      );
    } catch (e) {
      el.append(errorBox(e));
    }
  })();
  return { el };
}

export function ingestKeys() {
  return {
    el: h(
      "div",
      {},
      h("h1", {}, "Ingest keys"),
      h("p", { class: "muted" }, "Producers publish your organization's events with these keys."),
      listSection({
        title: "Ingest keys",
        path: "/v1/organization/ingest-keys",
        createLabel: "Create ingest key",
        fields: [{ name: "name", label: "Key name", placeholder: "gateway eu-1", hint: "The key itself is shown once." }],
        columns: ["Name", "Id", "Created", "Actions"],
        onCreated: (k) => showOnce("New ingest key", "Key", k.key),
        row: (k, reload) =>
          h(
            "tr",
            {},
            h("td", {}, k.name || "—"),
            h("td", { class: "mono" }, k.id),
            h("td", {}, when(k.created_at)),
            h("td", {}, removeButton("Delete key", "Delete this ingest key?", "Publishing with it is refused from now on.", `/v1/organization/ingest-keys/${encodeURIComponent(k.id)}`, reload)),
          ),
      }),
    ),
  };
}
