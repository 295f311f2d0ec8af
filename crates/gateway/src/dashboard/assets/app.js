// codex-gateway dashboard: the little script the pages need. No framework, nothing loaded from elsewhere.
// Every state-changing call is a JSON POST with the session's CSRF token (X-CSRF-Token); text from the
// server is always put in with textContent, never as HTML.
"use strict";
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const csrf = () => $('meta[name="csrf-token"]')?.content ?? "";

  async function call(method, url, body) {
    const opts = { method, headers: { "x-csrf-token": csrf() }, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["content-type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(url, opts);
    let data = null;
    try { data = await res.json(); } catch { /* not JSON */ }
    if (!res.ok) {
      const e = new Error((data && (data.error?.message || data.error)) || `HTTP ${res.status}`);
      e.field = data?.field;
      throw e;
    }
    return data;
  }

  function show(el, text, kind) {
    if (!el) return;
    el.textContent = text;
    el.hidden = !text;
    el.classList.remove("good", "bad");
    if (kind) el.classList.add(kind);
  }

  // A form's fields (data-key) as the JSON the Keys and Users calls take: a checkbox's state, a data-bool's "true",
  // a number, or an empty number left out (null where data-nullable: a budget's empty field removes that limit).
  function read(form) {
    const v = {};
    for (const el of $$("[data-key]", form)) {
      const k = el.dataset.key;
      if (el.dataset.bool !== undefined) v[k] = el.value === "true";
      else if (el.type === "checkbox") v[k] = el.checked;
      else if (el.type !== "number") v[k] = el.value;
      else if (el.value.trim() !== "") v[k] = Number(el.value);
      else if (el.dataset.nullable !== undefined) v[k] = null;
    }
    return v;
  }

  // Copy the text of `code` (the clipboard, else it is selected for Ctrl+C), saying which in `out`.
  async function copy(code, out) {
    try {
      await navigator.clipboard.writeText(code.textContent);
      show(out, "Copied.", "good");
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      show(out, "Selected: press Ctrl+C to copy.");
    }
  }

  // Times: "in 2 h 5 min" for resets, "3 min ago" for last use; refreshed every second.
  function span(secs) {
    const s = Math.abs(Math.round(secs));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }
  function tick() {
    const now = Date.now() / 1000;
    for (const t of $$("time[data-reset]")) {
      const at = Number(t.dataset.reset);
      if (!at) continue;
      t.textContent = at > now ? `in ${span(at - now)}` : "now";
      t.dateTime = new Date(at * 1000).toISOString();
      t.title = new Date(at * 1000).toLocaleString();
    }
    for (const t of $$("time[data-ago]")) {
      const at = Number(t.dataset.ago);
      t.textContent = `${span(now - at)} ago`;
      t.title = new Date(at * 1000).toLocaleString();
    }
  }

  // Log in / out.
  function login() {
    // Single sign-on comes back to where the sign-in was asked from too (the server checks the address).
    const sso = $("#sso-start");
    const asked = new URLSearchParams(location.search).get("next");
    if (sso && asked) sso.href = "/dashboard/sso/start?next=" + encodeURIComponent(asked);
    // The admin key's form and, when users exist, the user's (name, password, one-time code).
    for (const form of $$("form.login-form")) {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const btn = $("button[type=submit]", form);
        const err = $(".error", form);
        btn.disabled = true;
        show(err, "");
        const body = { csrf: $(".login-csrf", form).value };
        // Where the sign-in was asked from (the Codex CLI's sign-in pages): the server checks it.
        const next = new URLSearchParams(location.search).get("next");
        if (next) body.next = next;
        if ($("#key", form)) body.key = $("#key", form).value;
        else {
          body.name = $("#user-name", form).value;
          body.password = $("#user-password", form).value;
          const code = $("#user-code", form).value.trim();
          if (code) body.code = code;
        }
        try {
          const r = await call("POST", "/dashboard/login", body);
          location.assign(r.next || "/dashboard");
        } catch (x) {
          show(err, x.message, "bad");
        } finally {
          btn.disabled = false;
        }
      });
    }
  }
  // The Codex CLI's device sign-in: approve or deny the code it shows.
  function device() {
    const form = $("#device-form");
    if (!form) return;
    const out = $("#device-result");
    for (const btn of $$("button[data-approve]", form)) {
      btn.addEventListener("click", async (e) => {
        e.preventDefault();
        show(out, "");
        try {
          const r = await call("POST", "/dashboard/api/oauth/device", {
            user_code: $("#user-code-input", form).value,
            approve: btn.dataset.approve === "true",
          });
          show(out, r.message, "good");
          form.hidden = true;
        } catch (x) {
          show(out, x.message, "bad");
        }
      });
    }
  }
  function logout() {
    $("#logout")?.addEventListener("click", async () => {
      try { await call("POST", "/dashboard/logout"); } finally { location.assign("/dashboard/login"); }
    });
  }

  // Overview: poll every 3 s; requests per minute from the difference between polls.
  function overview() {
    if (!$("#overview")) return;
    let last = null;
    const put = (k, v) => { for (const el of $$(`[data-k="${k}"]`)) el.textContent = String(v); };
    async function poll() {
      try {
        const o = await call("GET", "/dashboard/api/overview");
        for (const k of ["accounts_serving", "accounts_total", "active_streams", "in_flight", "strategy"]) put(k, o[k]);
        for (const [k, v] of Object.entries(o.totals)) put(`totals.${k}`, v);
        put("tokens_total", o.totals.input_tokens + o.totals.output_tokens);
        put("error_rate", o.totals.requests ? (100 * o.totals.errors / o.totals.requests).toFixed(1) : "0");
        const now = Date.now();
        if (last) put("rpm", (((o.totals.requests - last.n) * 60000) / (now - last.t)).toFixed(1));
        last = { n: o.totals.requests, t: now };
        const r = $("time[data-reset]");
        if (r) r.dataset.reset = o.soonest_reset ?? "";
        const outage = $("#store-outage");
        if (outage) outage.hidden = o.store !== "unreachable";
      } catch (err) {
        if (String(err.message).includes("Not logged in")) location.assign("/dashboard/login");
      }
    }
    poll();
    setInterval(poll, 3000);
  }

  // Accounts: actions, tabs, the ways to add one.
  function accounts() {
    for (const card of $$("article.account")) {
      const out = $(".result", card);
      for (const btn of $$("button[data-act]", card)) {
        btn.addEventListener("click", async () => {
          const act = btn.dataset.act;
          if (btn.dataset.confirm && !confirm(btn.dataset.confirm)) return;
          const body = {};
          for (const f of $$("[data-field]", card)) body[f.dataset.field] = f.value;
          btn.disabled = true;
          show(out, "Working…");
          try {
            const r = await call("POST", `/dashboard/api/accounts/${encodeURIComponent(card.dataset.id)}/${act}`, body);
            if (act === "check") {
              const c = r.check || {};
              const via = c.via ? ` via ${c.via}` : "";
              const what = c.ok ? "Reachable" : `Failed${c.error ? `: ${c.error}` : c.status ? `: HTTP ${c.status}` : ""}`;
              show(out, `${what}${via} (${c.latency_ms ?? r.latency_ms} ms)`, c.ok ? "good" : "bad");
            } else {
              location.reload();
            }
          } catch (err) {
            show(out, err.message, "bad");
          } finally {
            btn.disabled = false;
          }
        });
      }
    }
    const tabs = $$('[role="tab"]');
    for (const tab of tabs) {
      tab.addEventListener("click", () => {
        for (const t of tabs) {
          const on = t === tab;
          t.setAttribute("aria-selected", String(on));
          $(`#${t.getAttribute("aria-controls")}`).hidden = !on;
        }
      });
    }
    const err = $("#add-error");
    const flow = $("#login-flow");
    const label = () => $("#add-label")?.value ?? "";
    async function add(body) {
      show(err, "");
      try {
        await call("POST", "/dashboard/api/accounts/add", { ...body, label: label() });
        location.reload();
      } catch (e) {
        show(err, e.message, "bad");
      }
    }
    $("#add-key-btn")?.addEventListener("click", () => add({ kind: "api_key", key: $("#api-key").value }));
    $("#add-relay-btn")?.addEventListener("click", () =>
      add({ kind: "relay", key: $("#relay-key").value, base_url: $("#relay-url").value, models: $("#relay-models").value }));
    $("#add-file-btn")?.addEventListener("click", async () => {
      const f = $("#auth-file").files[0];
      if (!f) return show(err, "Choose an auth.json file first.", "bad");
      add({ kind: "auth_json", text: await f.text() });
    });
    for (const btn of $$("button[data-login]")) {
      btn.addEventListener("click", async () => {
        show(err, "");
        btn.disabled = true;
        try {
          const { job } = await call("POST", `/dashboard/api/login/${btn.dataset.login}`, { label: label() });
          await follow(job);
        } catch (e) {
          show(err, e.message, "bad");
        } finally {
          btn.disabled = false;
        }
      });
    }
    // Poll a login job, showing what it asks for, until it is done.
    async function follow(job) {
      flow.hidden = false;
      flow.replaceChildren(text("p", "Starting…"));
      let shown = "";
      for (;;) {
        const s = await call("GET", `/dashboard/api/login/job/${job}`);
        if (s.state === "done") {
          flow.replaceChildren(text("p", `Added ${s.account}${s.replaced ? " (logged in again)" : ""}.`, "good"));
          setTimeout(() => location.reload(), 800);
          return;
        }
        if (s.state === "failed") {
          flow.replaceChildren(text("p", s.error, "error"));
          return;
        }
        if (s.state !== shown) {
          shown = s.state;
          if (s.state === "device") {
            flow.replaceChildren(
              text("p", "Open this page, sign in, and enter the code:"),
              link(s.url),
              text("p", s.user_code, "code", "device-code"),
              text("p", "Waiting for approval…", "muted", "device-status"));
          } else if (s.state === "browser") {
            flow.replaceChildren(text("p", "Open the sign-in in a browser on the gateway's machine:"), link(s.url, "Sign in to ChatGPT"),
              text("p", "Waiting for the sign-in…", "muted"));
          } else if (s.state === "paste") {
            pasteForm(job, s.url);
            return;
          }
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    function pasteForm(job, url) {
      const input = document.createElement("input");
      input.type = "text";
      input.id = "paste-url";
      const lab = document.createElement("label");
      lab.htmlFor = "paste-url";
      lab.textContent = "The address the browser ended on";
      const go = document.createElement("button");
      go.type = "button";
      go.textContent = "Finish sign-in";
      const msg = text("p", "", "error");
      msg.hidden = true;
      go.addEventListener("click", async () => {
        go.disabled = true;
        try {
          const s = await call("POST", `/dashboard/api/login/job/${job}/paste`, { text: input.value });
          flow.replaceChildren(text("p", `Added ${s.account}.`, "good"));
          setTimeout(() => location.reload(), 800);
        } catch (e) {
          show(msg, e.message, "bad");
        } finally {
          go.disabled = false;
        }
      });
      flow.replaceChildren(text("p", "1. Open this link and sign in:"), link(url, "Sign in to ChatGPT"), lab, input, go, msg);
    }
    function text(tag, s, cls, id) {
      const el = document.createElement(tag);
      el.textContent = s;
      if (cls) el.className = cls;
      if (id) el.id = id;
      return el;
    }
    function link(href, label) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = label || href;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      return a;
    }
  }

  // Setup: the key substituted into the snippets, copy, and a test request in the client's dialect.
  function setup() {
    const keyInput = $("#setup-key");
    if (!keyInput) return;
    const choice = $("#setup-key-choice");
    const note = $("#setup-key-note");
    // The secret to use: typed here, or kept by the Keys page in this tab when it created the chosen key.
    const secret = () => keyInput.value.trim() || (choice.value && sessionStorage.getItem(`cgw-key-secret:${choice.value}`)) || "";
    const fill = () => {
      const opt = choice.selectedOptions[0];
      const s = secret();
      const shown = s || (opt?.dataset.prefix ? `${opt.dataset.prefix}...REST_OF_KEY` : "YOUR_GATEWAY_KEY");
      for (const code of $$("code[data-template]")) {
        code.textContent = code.dataset.template.split("YOUR_GATEWAY_KEY").join(shown);
      }
      note.textContent = keyInput.value.trim() ? "Using the secret typed here."
        : s ? "Using the secret of the key created in this tab."
        : opt?.dataset.prefix ? "Secrets are shown only when a key is created: the snippets show its prefix; type the secret to test."
        : "";
    };
    keyInput.addEventListener("input", fill);
    choice.addEventListener("change", fill);
    fill();
    $("#setup-model")?.addEventListener("change", (e) => {
      const key = choice.value ? `&key=${encodeURIComponent(choice.value)}` : "";
      location.assign(`/dashboard/setup?model=${encodeURIComponent(e.target.value)}${key}`);
    });
    const root = $(".clients");
    const model = root.dataset.model;
    for (const card of $$("section.client")) {
      const out = $(".result", card);
      $("button[data-copy]", card).addEventListener("click", () => copy($("code", card), out));
      $("button[data-test]", card).addEventListener("click", async (ev) => {
        const btn = ev.currentTarget;
        btn.disabled = true;
        show(out, "Sending a tiny request…");
        try {
          const answer = await testRequest(card.dataset.dialect, model, secret(), root.dataset.ollama);
          show(out, `Answer: ${answer}`, "good");
        } catch (e) {
          show(out, `Error: ${e.message}`, "bad");
        } finally {
          btn.disabled = false;
        }
      });
    }
  }

  async function testRequest(dialect, model, key, ollama) {
    const prompt = "Reply with one word: OK";
    const k = key || "none";
    let url, headers = { "content-type": "application/json" }, body, pick;
    switch (dialect) {
      case "chat":
        url = "/v1/chat/completions";
        headers.authorization = `Bearer ${k}`;
        body = { model, messages: [{ role: "user", content: prompt }] };
        pick = (d) => d.choices?.[0]?.message?.content;
        break;
      case "responses":
        url = "/v1/responses";
        headers.authorization = `Bearer ${k}`;
        body = { model, input: prompt };
        pick = (d) => (d.output || []).flatMap((o) => o.content || []).map((c) => c.text || "").join("");
        break;
      case "anthropic":
        url = "/v1/messages";
        headers["x-api-key"] = k;
        headers["anthropic-version"] = "2023-06-01";
        body = { model, max_tokens: 256, messages: [{ role: "user", content: prompt }] };
        pick = (d) => (d.content || []).map((c) => c.text || "").join("");
        break;
      case "gemini":
        url = `/v1beta/models/${encodeURIComponent(model)}:generateContent`;
        headers["x-goog-api-key"] = k;
        body = { contents: [{ role: "user", parts: [{ text: prompt }] }] };
        pick = (d) => (d.candidates?.[0]?.content?.parts || []).map((p) => p.text || "").join("");
        break;
      case "ollama":
        if (!ollama) throw new Error("the Ollama bridge is off: turn it on in Settings (needs a restart)");
        url = `${ollama}/api/chat`;
        body = { model, stream: false, messages: [{ role: "user", content: prompt }] };
        pick = (d) => d.message?.content;
        break;
      default:
        throw new Error(`unknown dialect ${dialect}`);
    }
    const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body), credentials: "omit" });
    let data = null;
    try { data = await res.json(); } catch { /* not JSON */ }
    if (!res.ok) {
      const e = data && (data.error?.message || data.error || data.message);
      throw new Error(`HTTP ${res.status}${e ? `: ${typeof e === "string" ? e : JSON.stringify(e)}` : ""}`);
    }
    const answer = pick(data || {});
    return answer ? String(answer).trim() : "(empty answer)";
  }

  // Settings: save the form as JSON; say what applied and what needs a restart.
  function settings() {
    const form = $("#settings-form");
    if (!form) return;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const cell = (el) => (el.value.trim() === "" ? null : Number(el.value));
      const prices = $$("tr[data-price-row]").map((tr) => ({
        model: $('[data-col="model"]', tr).value,
        input: cell($('[data-col="input"]', tr)),
        cached_input: cell($('[data-col="cached_input"]', tr)),
        output: cell($('[data-col="output"]', tr)),
      }));
      for (const el of $$("[aria-invalid]", form)) el.removeAttribute("aria-invalid");
      for (const el of $$(".field-error", form)) show(el, "");
      // Every input the server declared (data-setting), by its id: the JSON member the save reads.
      const body = { prices };
      for (const el of $$("[data-setting]", form)) {
        body[el.id] = el.type === "checkbox" ? el.checked : el.type === "number" ? cell(el) : el.value;
      }
      show($("#settings-error"), "");
      show($("#settings-result"), "Saving…");
      try {
        const r = await call("POST", "/dashboard/api/settings", body);
        const parts = [];
        if (r.message) parts.push(r.message);
        if (r.applied?.length) parts.push(`Applied now: ${r.applied.join(", ")}.`);
        if (r.restart?.length) parts.push(`Saved; needs a restart: ${r.restart.join(", ")}.`);
        show($("#settings-result"), parts.join(" "), "good");
      } catch (err) {
        show($("#settings-result"), "");
        // In place: the refused field is marked, its message beside it, and it gets the focus.
        const field = err.field && document.getElementById(err.field);
        const near = err.field && (document.getElementById(`${err.field}-error`) ||
          (err.field.startsWith("price") ? $("#prices-error") : null));
        if (field) {
          field.setAttribute("aria-invalid", "true");
          field.focus();
        }
        if (near) show(near, err.message, "bad");
        else show($("#settings-error"), err.message, "bad");
      }
    });
    $("#add-price")?.addEventListener("click", () => {
      const rows = $$("tr[data-price-row]");
      const row = rows[rows.length - 1].cloneNode(true);
      const i = rows.length;
      for (const input of $$("input", row)) {
        input.value = "";
        input.removeAttribute("aria-invalid");
        input.id = `price-${i}-${input.dataset.col}`;
        input.setAttribute("aria-label", input.getAttribute("aria-label").replace(/row \d+$/, `row ${i + 1}`));
      }
      $("#price-rows").append(row);
      $('[data-col="model"]', row).focus();
    });
  }

  // Keys: create (the secret shown once), edit, revoke.
  function keys() {
    const create = $("#create-key");
    create?.addEventListener("submit", async (e) => {
      e.preventDefault();
      const err = $(".error", create);
      show(err, "");
      try {
        const k = await call("POST", "/dashboard/api/keys", read(create));
        $("#new-secret").textContent = k.secret;
        // Kept in this tab only (sessionStorage), so Setup can fill it in; the server never shows it again.
        try { sessionStorage.setItem(`cgw-key-secret:${k.id}`, k.secret); } catch { /* storage off */ }
        const setupLink = $("#setup-with-key");
        if (setupLink) setupLink.href = `/dashboard/setup?key=${encodeURIComponent(k.id)}`;
        create.hidden = true;
        $("#secret-box").hidden = false;
        $("#copy-secret").focus();
      } catch (x) {
        show(err, x.message, "bad");
      }
    });
    $("#copy-secret")?.addEventListener("click", () => copy($("#new-secret"), $("#secret-box .result")));
    $("#secret-done")?.addEventListener("click", () => {
      $("#new-secret").textContent = "";
      location.reload();
    });
    for (const card of $$("article.key")) {
      const out = $(".result", card);
      const id = encodeURIComponent(card.dataset.id);
      $("form.edit-key", card)?.addEventListener("submit", async (e) => {
        e.preventDefault();
        try {
          await call("POST", `/dashboard/api/keys/${id}`, read(e.currentTarget));
          location.reload();
        } catch (x) {
          show(out, x.message, "bad");
        }
      });
      $("button[data-revoke]", card)?.addEventListener("click", async (e) => {
        if (!confirm(e.currentTarget.dataset.confirm)) return;
        try {
          await call("POST", `/dashboard/api/keys/${id}/revoke`);
          location.reload();
        } catch (x) {
          show(out, x.message, "bad");
        }
      });
    }
  }

  // Users: each form posts its fields (data-key) to its data-api; a TOTP enrolment shows its URI once.
  function users() {
    for (const form of $$("form[data-api]")) {
      const card = form.closest("article, section");
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
        const out = $(".result", card);
        try {
          const r = await call("POST", form.dataset.api, read(form));
          if (r && r.otpauth_uri) {
            $(".otp-uri", card).textContent = r.otpauth_uri;
            $(".otp", card).hidden = false;
          } else location.reload();
        } catch (x) {
          show(out, x.message, "bad");
        }
      });
    }
    for (const b of $$("button.otp-done")) {
      b.addEventListener("click", () => { $(".otp-uri", b.closest("article")).textContent = ""; location.reload(); });
    }
  }

  // Requests: a row's button shows or hides the row of details under it.
  function requests() {
    for (const b of $$("button.disclose")) {
      b.addEventListener("click", () => {
        const detail = document.getElementById(b.getAttribute("aria-controls"));
        if (!detail) return;
        detail.hidden = !detail.hidden;
        b.setAttribute("aria-expanded", String(!detail.hidden));
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    keys();
    users();
    requests();
    login();
    device();
    logout();
    overview();
    accounts();
    setup();
    settings();
    tick();
    setInterval(tick, 1000);
  });
})();
