// The API reference, rendered from /openapi.json with no third-party script (works offline).
"use strict";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function schemaName(s) {
  if (!s) return "";
  if (s.$ref) return s.$ref.split("/").pop();
  if (s.anyOf) return s.anyOf.map(schemaName).join(" | ");
  return s.type || "";
}

document.addEventListener("DOMContentLoaded", async () => {
  const box = document.getElementById("endpoints");
  const spec = await (await fetch("/openapi.json", { credentials: "same-origin" })).json();
  const schemas = (spec.components && spec.components.schemas) || {};
  box.replaceChildren();
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const sec = el("section", "endpoint");
      sec.setAttribute("data-endpoint", method.toUpperCase() + " " + path);
      sec.append(el("h2", null, method.toUpperCase() + " " + path));
      if (op.description || op.summary) sec.append(el("p", null, op.description || op.summary));
      const params = (op.parameters || []).map((p) => [p.name, p.in, schemaName(p.schema), p.required]);
      const body = op.requestBody && op.requestBody.content;
      if (body) {
        for (const [ctype, media] of Object.entries(body)) {
          const ref = media.schema && media.schema.$ref && schemas[media.schema.$ref.split("/").pop()];
          if (ref && ref.properties) {
            for (const [name, prop] of Object.entries(ref.properties)) {
              params.push([name, ctype, schemaName(prop) + (prop.description ? " — " + prop.description : ""),
                (ref.required || []).includes(name)]);
            }
          }
        }
      }
      if (params.length) {
        const t = el("table");
        const head = el("tr");
        for (const h of ["name", "in", "type", "required"]) head.append(el("th", null, h));
        t.append(head);
        for (const [n, where, type, req] of params) {
          const tr = el("tr");
          for (const v of [n, where, type, req ? "yes" : ""]) tr.append(el("td", null, v));
          t.append(tr);
        }
        sec.append(t);
      }
      box.append(sec);
    }
  }
});
