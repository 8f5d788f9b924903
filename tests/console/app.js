// The Parley console: a WhatsApp-like customer pane and a Connect-like
// agent pane over parley-local's console API (see tests/src/console.rs).
// Plain JavaScript, no framework, nothing fetched from elsewhere.
"use strict";

(() => {
  const POLL_MS = 500;
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- state

  const store = {
    get(key, fallback, where = sessionStorage) {
      try {
        const raw = where.getItem(key);
        return raw ? JSON.parse(raw) : fallback;
      } catch {
        return fallback;
      }
    },
    set(key, value, where = sessionStorage) {
      try {
        where.setItem(key, JSON.stringify(value));
      } catch {
        /* storage full or disabled: the console works without it */
      }
    },
  };

  const ui = {
    /** The last /api/state, parsed, and its text (to skip identical polls). */
    state: { conversations: [] },
    stateText: "",
    /** Customers added here that have not written yet: phone → name. */
    added: store.get("parley.customers", {}, localStorage),
    selected: null,
    /** Agent item id → trace id (the API answers it on send only). */
    agentTraces: store.get("parley.agentTraces", {}),
    /** Outbound WhatsApp message id → its place in time (see orderWhatsApp). */
    outKeys: store.get("parley.outKeys", {}),
    /** Phones whose conversation was seen at least once on this page. */
    known: new Set(),
    /** Phone → number of messages from the business already looked at. */
    readCount: {},
    /** WhatsApp message id → option id the customer tapped. */
    chosen: store.get("parley.chosen", {}),
    connected: null,
    recorder: null,
    trace: null,
  };

  // -------------------------------------------------------------- helpers

  const escapeHtml = (s) =>
    String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "html") node.innerHTML = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const clock = (ms) =>
    ms ? new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "";

  const fmtMs = (us) => {
    const ms = us / 1000;
    if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
    if (ms >= 10) return `${ms.toFixed(0)} ms`;
    return `${ms.toFixed(ms >= 1 ? 1 : 2)} ms`;
  };

  const bytes = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : n >= 1024 ? `${Math.round(n / 1024)} kB` : `${n} B`);

  /** Splits text into URL and non-URL runs, so formatting never breaks a link. */
  function withLinks(text, format) {
    const parts = String(text ?? "").split(/(https?:\/\/[^\s<>"]+)/g);
    return parts
      .map((part, i) =>
        i % 2 === 1
          ? `<a href="${escapeHtml(part)}" target="_blank" rel="noopener noreferrer">${escapeHtml(part)}</a>`
          : format(escapeHtml(part)),
      )
      .join("");
  }

  /** WhatsApp's formatting: *bold*, _italic_, ~strike~, ```monospace```, `code`. */
  function whatsappHtml(text) {
    return withLinks(text, (s) =>
      s
        .replace(/```([\s\S]+?)```/g, "<code>$1</code>")
        .replace(/`([^`\n]+)`/g, "<code>$1</code>")
        .replace(/(^|[^\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])/g, "$1<strong>$2</strong>")
        .replace(/(^|[^\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])/g, "$1<em>$2</em>")
        .replace(/(^|[^\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])/g, "$1<s>$2</s>"),
    );
  }

  /** The bit of Markdown an agent writes: **bold**, *italic*, ~~strike~~, `code`, [links](…). */
  function markdownHtml(text) {
    const links = [];
    const src = String(text ?? "").replace(/\[([^\]\n]+)\]\((https?:\/\/[^)\s]+)\)/g, (_, t, u) => {
      links.push(`<a href="${escapeHtml(u)}" target="_blank" rel="noopener noreferrer">${escapeHtml(t)}</a>`);
      return `\u0000${links.length - 1}\u0000`;
    });
    const html = withLinks(src, (s) =>
      s
        .replace(/`([^`\n]+)`/g, "<code>$1</code>")
        .replace(/\*\*(?=\S)([^*\n]*?\S)\*\*/g, "<strong>$1</strong>")
        .replace(/__(?=\S)([^_\n]*?\S)__/g, "<strong>$1</strong>")
        .replace(/(^|[^\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])/g, "$1<em>$2</em>")
        .replace(/(^|[^\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])/g, "$1<em>$2</em>")
        .replace(/~~(?=\S)([^~\n]*?\S)~~/g, "<s>$1</s>")
        .replace(/^#{1,6} (.*)$/gm, "<strong>$1</strong>"),
    );
    return html.replace(/\u0000(\d+)\u0000/g, (_, i) => links[Number(i)]);
  }

  async function api(method, path, body, contentType) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      if (contentType) {
        init.headers["content-type"] = contentType;
        init.body = body;
      } else {
        init.headers["content-type"] = "application/json";
        init.body = JSON.stringify(body);
      }
    }
    const response = await fetch(path, init);
    const text = await response.text();
    if (!response.ok) throw new Error(text || `${response.status} ${response.statusText}`);
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch {
      return { text };
    }
  }

  function say(where, message, isError = false) {
    const line = $(where);
    line.textContent = message;
    line.classList.toggle("error", isError);
  }

  /** Runs an action, reporting failure on the pane's status line, then polls at once. */
  async function act(where, busy, action) {
    say(where, busy);
    try {
      const result = await action();
      say(where, "");
      return result;
    } catch (error) {
      say(where, `Failed: ${error.message}`, true);
      return undefined;
    } finally {
      poll();
    }
  }

  // ------------------------------------------------------- conversations

  const conversations = () => ui.state.conversations || [];
  const conversation = (phone) => conversations().find((c) => c.phone === phone);

  function customers() {
    const list = new Map();
    for (const [phone, name] of Object.entries(ui.added)) list.set(phone, { phone, name, conversation: null });
    for (const c of conversations()) list.set(c.phone, { phone: c.phone, name: c.name || ui.added[c.phone], conversation: c });
    return [...list.values()];
  }

  function nameOf(phone) {
    const c = conversation(phone);
    return (c && c.name) || ui.added[phone] || `Customer ${String(phone).slice(-4)}`;
  }

  function select(phone) {
    if (ui.selected === phone) return;
    ui.selected = phone;
    if (phone && location.hash !== `#${phone}`) history.replaceState(null, "", `#${phone}`);
    say("wa-status", "");
    say("agent-status", "");
    render(true);
  }

  /**
   * The customer pane's order. Inbound messages carry the time they were
   * sent; outbound ones only their order, so each is placed at the time
   * the console first saw it (kept in sessionStorage). A conversation
   * seen for the first time places them after what caused them: the
   * message they reply to, else the next agent message in Connect.
   */
  function orderWhatsApp(conv, serverNow) {
    const keys = new Map();
    let lastIn = 0;
    for (const m of conv.whatsapp) {
      if (m.direction === "in") {
        keys.set(m.id, m.at_ms);
        lastIn = Math.max(lastIn, m.at_ms);
      }
    }
    const outs = conv.whatsapp.filter((m) => m.direction === "out").sort((a, b) => a.order - b.order);
    const causes = conv.chats
      .flatMap((c) => c.items)
      .filter(
        (i) =>
          (i.role !== "CUSTOMER" && (i.kind === "MESSAGE" || i.kind === "ATTACHMENT") && !i.notice) ||
          (i.kind === "EVENT" && /chat\.ended$/.test(i.content_type)),
      )
      .sort((a, b) => a.at_ms - b.at_ms);
    const firstSight = !ui.known.has(conv.phone);
    let previous = 0;
    let cause = 0;
    let changed = false;
    for (const m of outs) {
      let key = m.at_ms ?? ui.outKeys[m.id];
      if (key === undefined) {
        if (!firstSight) key = serverNow + 1;
        else if (m.reply_to && keys.has(m.reply_to)) key = keys.get(m.reply_to) + 1;
        else {
          while (cause < causes.length && causes[cause].at_ms < previous) cause++;
          key = cause < causes.length ? causes[cause++].at_ms + 1 : Math.max(previous, lastIn) + 1;
        }
        ui.outKeys[m.id] = key;
        changed = true;
      }
      key = Math.max(key, previous);
      previous = key;
      keys.set(m.id, key);
    }
    if (changed) store.set("parley.outKeys", ui.outKeys);
    if (firstSight) ui.readCount[conv.phone] ??= outs.length;
    ui.known.add(conv.phone);
    return conv.whatsapp
      .map((m, i) => ({ m, key: keys.get(m.id) ?? 0, i }))
      .sort((a, b) => a.key - b.key || (a.m.direction === b.m.direction ? a.i - b.i : a.m.direction === "in" ? -1 : 1))
      .map((x) => x.m);
  }

  function serverNowOf(state) {
    let now = 0;
    for (const c of state.conversations || []) {
      for (const m of c.whatsapp) now = Math.max(now, m.at_ms || 0);
      for (const chat of c.chats) for (const i of chat.items) now = Math.max(now, i.at_ms || 0);
    }
    return now;
  }

  // ------------------------------------------------------------ polling

  let pollTimer = null;
  let polling = false;
  let pollAgain = false;

  async function poll() {
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    clearTimeout(pollTimer);
    try {
      const response = await fetch("/api/state", { cache: "no-store" });
      if (!response.ok) throw new Error(`${response.status}`);
      const text = await response.text();
      setConnected(true);
      if (text !== ui.stateText) {
        ui.stateText = text;
        ui.state = JSON.parse(text);
        const now = serverNowOf(ui.state);
        ui.ordered = {};
        for (const c of conversations()) ui.ordered[c.phone] = orderWhatsApp(c, now);
        if (!ui.selected) {
          const wanted = decodeURIComponent(location.hash.slice(1));
          const first = customers().find((c) => c.phone === wanted) || customers()[0];
          if (first) select(first.phone);
        }
        render();
      }
      $("app").dataset.ready = "true";
    } catch (error) {
      setConnected(false, error);
    } finally {
      polling = false;
      if (pollAgain) {
        pollAgain = false;
        poll();
      } else {
        pollTimer = setTimeout(poll, POLL_MS);
      }
    }
  }

  function setConnected(ok, error) {
    if (ui.connected === ok) return;
    ui.connected = ok;
    const line = $("connection");
    line.textContent = ok ? "● Live" : `● Disconnected (${error?.message || "no answer"}); retrying…`;
    line.classList.toggle("down", !ok);
  }

  // ------------------------------------------------------------ rendering

  /**
   * Puts `entries` ([{key, sig, build}]) into `container` in order,
   * reusing the element of each key whose signature did not change (so an
   * audio player keeps playing and focus stays put).
   */
  function reconcile(container, entries) {
    const existing = new Map();
    for (const child of container.children) existing.set(child.dataset.key, child);
    const wanted = entries.map((entry) => {
      const old = existing.get(entry.key);
      if (old && old.dataset.sig === entry.sig) return old;
      const fresh = entry.build();
      fresh.dataset.key = entry.key;
      fresh.dataset.sig = entry.sig;
      if (old) old.replaceWith(fresh);
      return fresh;
    });
    const keep = new Set(wanted);
    for (const child of [...container.children]) if (!keep.has(child)) child.remove();
    wanted.forEach((node, i) => {
      if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
    });
  }

  function nearBottom(box) {
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  function render(jump = false) {
    renderCustomers();
    const phone = ui.selected;
    const conv = phone ? conversation(phone) : null;
    const waBox = $("wa-messages");
    const agentBox = $("agent-messages");
    const stickWa = jump || nearBottom(waBox);
    const stickAgent = jump || nearBottom(agentBox);
    renderCustomerPane(phone, conv);
    renderAgentPane(phone, conv);
    if (stickWa) waBox.scrollTop = waBox.scrollHeight;
    if (stickAgent) agentBox.scrollTop = agentBox.scrollHeight;
    if (conv) ui.readCount[phone] = conv.whatsapp.filter((m) => m.direction === "out").length;
  }

  function renderCustomers() {
    const list = $("customer-list");
    const entries = customers().map(({ phone, name, conversation: c }) => {
      const last = c ? (ui.ordered?.[phone] || c.whatsapp).at(-1) : null;
      const preview = last ? `${last.direction === "in" ? "You: " : ""}${summary(last)}` : "no messages yet";
      const outs = c ? c.whatsapp.filter((m) => m.direction === "out").length : 0;
      const unread = phone === ui.selected ? 0 : Math.max(0, outs - (ui.readCount[phone] ?? outs));
      const chats = c ? c.chats.length : 0;
      const open = c ? c.chats.some((chat) => !chat.ended) : false;
      const selected = phone === ui.selected;
      return {
        key: phone,
        sig: JSON.stringify([name, preview, unread, chats, open, selected]),
        build: () =>
          el(
            "li",
            {},
            el(
              "button",
              {
                type: "button",
                class: "customer",
                "data-testid": "customer-item",
                "data-phone": phone,
                "aria-current": selected ? "true" : null,
                onclick: () => select(phone),
              },
              el("span", { class: "avatar", "aria-hidden": "true", text: initials(name) }),
              el(
                "span",
                { class: "who" },
                el("span", { class: "name", text: name || phone }),
                el("span", { class: "phone", text: `+${phone}` }),
                el("span", { class: "preview", text: preview }),
              ),
              el(
                "span",
                { class: "badges" },
                open ? el("span", { class: "badge live", title: "A Connect chat is open", text: "chat" }) : null,
                unread ? el("span", { class: "badge unread", "aria-label": `${unread} unread`, text: String(unread) }) : null,
              ),
            ),
          ),
      };
    });
    reconcile(list, entries);
  }

  function initials(name) {
    return (
      String(name || "?")
        .split(/\s+/)
        .filter(Boolean)
        .slice(0, 2)
        .map((w) => [...w][0].toUpperCase())
        .join("") || "?"
    );
  }

  function summary(m) {
    if (m.text) return m.text.split("\n")[0];
    const kinds = { image: "📷 Photo", video: "🎬 Video", document: "📄 Document", sticker: "Sticker", audio: "🎤 Audio", voice: "🎤 Voice note", location: "📍 Location", reaction: "Reaction" };
    return kinds[m.type] || m.type || "message";
  }

  function enableComposer(ids, on) {
    for (const id of ids) $(id).disabled = !on;
  }

  // ------------------------------------------------------ customer pane

  function renderCustomerPane(phone, conv) {
    const have = Boolean(phone);
    $("customer-title").textContent = have ? nameOf(phone) : "No customer yet";
    $("customer-sub").textContent = have ? `+${phone} · writing to the business number` : "Add a customer to start a conversation.";
    enableComposer(["wa-text", "wa-send", "wa-record", "wa-voice-file", "wa-file", "wa-file-send", "wa-location-send"], have);
    const box = $("wa-messages");
    if (!have) {
      reconcile(box, []);
      return;
    }
    const ordered = (conv && ui.ordered?.[phone]) || [];
    const byId = new Map(ordered.map((m) => [m.id, m]));
    const reactions = {};
    const shown = [];
    for (const m of ordered) {
      if (m.type === "reaction" && m.reaction && byId.has(m.reaction.message_id)) {
        reactions[m.reaction.message_id] = m.reaction.emoji;
      } else shown.push(m);
    }
    const entries = shown.map((m) => ({
      key: m.id,
      sig: JSON.stringify([m, reactions[m.id] || "", ui.chosen[m.id] || ""]),
      build: () => waMessage(m, byId, reactions[m.id]),
    }));
    if (!entries.length) {
      entries.push({ key: "empty", sig: "empty", build: () => el("p", { class: "empty", text: "Say hello: the first message opens a Connect chat." }) });
    }
    reconcile(box, entries);
  }

  function waMessage(m, byId, reaction) {
    const inbound = m.direction === "in";
    const node = el("article", {
      class: `msg ${inbound ? "in" : "out"} type-${m.type}`,
      "data-testid": "wa-message",
      "data-id": m.id,
      "data-direction": m.direction,
      "data-type": m.type,
      "aria-label": inbound ? "You" : "The business",
    });
    if (m.reply_to) {
      const quoted = byId.get(m.reply_to);
      node.append(
        el("blockquote", { class: "quote", "data-testid": "wa-quote" }, el("span", { class: "quote-who", text: quoted?.direction === "in" ? "You" : "Business" }), " ", quoted ? summary(quoted) : "a message"),
      );
    }
    if (m.media) node.append(mediaView(`/api/whatsapp-media/${encodeURIComponent(m.media.id)}`, m.media.mime_type, m.media.name, m.media.kind || m.type));
    if (m.type === "reaction" && m.reaction) {
      node.append(el("p", { class: "body", text: `Reacted ${m.reaction.emoji || ""}` }));
    } else if (m.text) {
      node.append(el("p", { class: "body", "data-testid": "wa-text-body", html: whatsappHtml(m.text) }));
    } else if (!m.media && m.type !== "text") {
      node.append(el("p", { class: "body muted", text: `[${summary(m)}]` }));
    }
    const options = [];
    if (Array.isArray(m.buttons)) {
      for (const b of m.buttons) {
        const reply = b.reply || b;
        if (reply && reply.id) options.push({ id: reply.id, title: reply.title || reply.id });
      }
    }
    if (options.length) node.append(optionGroup(m, options, "Reply buttons"));
    if (Array.isArray(m.list)) {
      for (const section of m.list) {
        const rows = (section.rows || []).map((r) => ({ id: r.id, title: r.title, description: r.description }));
        const group = optionGroup(m, rows, section.title || "Options", true);
        if (section.title) group.prepend(el("p", { class: "section-title", text: section.title }));
        node.append(group);
      }
    }
    const meta = el("footer", { class: "meta" });
    if (m.at_ms) meta.append(el("time", { datetime: new Date(m.at_ms).toISOString(), text: clock(m.at_ms) }));
    if (m.trace_id) meta.append(traceButton(m.trace_id, `the ${summary(m)} message`));
    node.append(meta);
    if (reaction) node.append(el("span", { class: "reaction", "data-testid": "wa-reaction", "aria-label": `reaction ${reaction}`, text: reaction }));
    return node;
  }

  function optionGroup(m, options, label, list = false) {
    return el(
      "div",
      { class: `options${list ? " list" : ""}`, role: "group", "aria-label": label },
      options.map((o) =>
        el(
          "button",
          {
            type: "button",
            class: "option",
            "data-testid": "wa-option",
            "data-option-id": o.id,
            "data-message-id": m.id,
            "aria-pressed": ui.chosen[m.id] === o.id ? "true" : "false",
            onclick: () => choose(m.id, o),
          },
          el("span", { class: "option-title", text: o.title }),
          o.description ? el("span", { class: "option-description", text: o.description }) : null,
        ),
      ),
    );
  }

  function mediaView(url, mime = "", name = "", kind = "") {
    const type = String(mime || "").split(";")[0].trim();
    const label = name || { voice: "voice note", audio: "audio", image: "photo", video: "video", sticker: "sticker" }[kind] || type || "file";
    const wrap = el("div", { class: "media", "data-testid": "media", "data-mime": type });
    let player = null;
    if (type.startsWith("image/") || kind === "image" || kind === "sticker") {
      player = el("img", { src: url, alt: name || `${kind || "image"} (${type})`, loading: "lazy", "data-testid": "media-image" });
      wrap.append(el("a", { href: url, target: "_blank", rel: "noopener" }, player));
    } else if (type.startsWith("audio/") || kind === "audio" || kind === "voice") {
      player = el("audio", { src: url, controls: true, preload: "metadata", "data-testid": "media-audio", "aria-label": `Play ${label}` });
      wrap.append(player);
    } else if (type.startsWith("video/") || kind === "video") {
      player = el("video", { src: url, controls: true, preload: "metadata", "data-testid": "media-video", "aria-label": label });
      wrap.append(player);
    }
    if (player) retryOnError(player, url);
    wrap.append(el("a", { class: "download", href: url, download: name || true, "data-testid": "media-link" }, player ? `⬇ ${label}` : `📄 ${label}`));
    return wrap;
  }

  /** An attachment may still be uploading when it is first listed: retry a few times. */
  function retryOnError(player, url) {
    let tries = 0;
    player.addEventListener("error", () => {
      if (tries++ >= 8) return;
      setTimeout(() => {
        player.src = `${url}${url.includes("?") ? "&" : "?"}retry=${tries}`;
      }, 500 * tries);
    });
  }

  function requireCustomer() {
    if (!ui.selected) throw new Error("add or pick a customer first");
    return ui.selected;
  }

  const customerPath = (phone, what) => `/api/customers/${encodeURIComponent(phone)}/${what}`;

  async function sendText(event) {
    event.preventDefault();
    const input = $("wa-text");
    const text = input.value;
    if (!text.trim()) return;
    const phone = ui.selected;
    input.value = "";
    const done = await act("wa-status", "Sending…", () =>
      api("POST", customerPath(requireCustomer(), "text"), { name: nameOf(phone), text }),
    );
    if (!done) input.value = text;
    input.focus();
  }

  async function sendFile(event) {
    event.preventDefault();
    const file = $("wa-file").files[0];
    if (!file) {
      say("wa-status", "Choose a file first.", true);
      return;
    }
    let kind = $("wa-file-kind").value;
    const type = file.type || "application/octet-stream";
    if (kind === "auto") {
      kind = type.startsWith("image/") ? "image" : type.startsWith("video/") ? "video" : type.startsWith("audio/") ? "audio" : "document";
    }
    const phone = ui.selected;
    const query = new URLSearchParams({ kind, name: file.name, caption: $("wa-caption").value, customer: nameOf(phone) });
    const done = await act("wa-status", `Sending ${file.name}…`, () =>
      api("POST", `${customerPath(requireCustomer(), "media")}?${query}`, file, type),
    );
    if (done) {
      $("wa-file").value = "";
      $("wa-caption").value = "";
    }
  }

  async function sendLocation(event) {
    event.preventDefault();
    const body = {
      latitude: Number($("wa-lat").value),
      longitude: Number($("wa-lng").value),
      name: $("wa-place").value,
      address: $("wa-address").value,
    };
    await act("wa-status", "Sending the location…", () => api("POST", customerPath(requireCustomer(), "location"), body));
  }

  async function choose(messageId, option) {
    ui.chosen[messageId] = option.id;
    store.set("parley.chosen", ui.chosen);
    await act("wa-status", `Choosing “${option.title}”…`, () =>
      api("POST", customerPath(requireCustomer(), "choose"), { message_id: messageId, option_id: option.id, title: option.title }),
    );
  }

  // ------------------------------------------------------------ voice notes

  /** Decodes any recording the browser can play and resamples it to 16 kHz mono. */
  async function decodeTo16k(arrayBuffer) {
    const rate = 16000;
    let decoded;
    if (typeof OfflineAudioContext === "function") {
      decoded = await new OfflineAudioContext(1, 1, rate).decodeAudioData(arrayBuffer.slice(0));
    } else {
      const context = new AudioContext();
      try {
        decoded = await context.decodeAudioData(arrayBuffer.slice(0));
      } finally {
        context.close();
      }
    }
    const length = decoded.length;
    const mono = new Float32Array(length);
    for (let c = 0; c < decoded.numberOfChannels; c++) {
      const data = decoded.getChannelData(c);
      for (let i = 0; i < length; i++) mono[i] += data[i] / decoded.numberOfChannels;
    }
    if (decoded.sampleRate === rate) return mono;
    // The decoder kept another rate: resample through an offline graph.
    const offline = new OfflineAudioContext(1, Math.ceil((length * rate) / decoded.sampleRate), rate);
    const buffer = offline.createBuffer(1, length, decoded.sampleRate);
    buffer.copyToChannel(mono, 0);
    const source = offline.createBufferSource();
    source.buffer = buffer;
    source.connect(offline.destination);
    source.start();
    return (await offline.startRendering()).getChannelData(0);
  }

  /** A 16-bit PCM mono WAV of `samples` (floats in -1..1). */
  function encodeWav(samples, rate = 16000) {
    const out = new DataView(new ArrayBuffer(44 + samples.length * 2));
    const ascii = (offset, s) => [...s].forEach((ch, i) => out.setUint8(offset + i, ch.charCodeAt(0)));
    ascii(0, "RIFF");
    out.setUint32(4, 36 + samples.length * 2, true);
    ascii(8, "WAVE");
    ascii(12, "fmt ");
    out.setUint32(16, 16, true);
    out.setUint16(20, 1, true);
    out.setUint16(22, 1, true);
    out.setUint32(24, rate, true);
    out.setUint32(28, rate * 2, true);
    out.setUint16(32, 2, true);
    out.setUint16(34, 16, true);
    ascii(36, "data");
    out.setUint32(40, samples.length * 2, true);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      out.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return new Blob([out.buffer], { type: "audio/wav" });
  }

  async function postVoice(phone, blob) {
    return api("POST", customerPath(phone, "voice"), blob, blob.type || "application/octet-stream");
  }

  async function toggleRecording() {
    if (ui.recorder) {
      ui.recorder.stop();
      return;
    }
    const phone = ui.selected;
    if (!phone) return;
    if (!navigator.mediaDevices?.getUserMedia || typeof MediaRecorder !== "function") {
      say("wa-status", "This browser cannot record audio here (it needs a secure origin such as localhost); upload a file instead.", true);
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      say("wa-status", `No microphone: ${error.message}`, true);
      return;
    }
    const chunks = [];
    const recorder = new MediaRecorder(stream);
    const button = $("wa-record");
    const timer = $("wa-record-time");
    const started = Date.now();
    let cancelled = false;
    recorder.addEventListener("dataavailable", (e) => e.data.size && chunks.push(e.data));
    recorder.addEventListener("stop", async () => {
      clearInterval(ui.recordTick);
      clearTimeout(ui.recordLimit);
      stream.getTracks().forEach((t) => t.stop());
      ui.recorder = null;
      button.textContent = "🎙 Record voice note";
      button.setAttribute("aria-pressed", "false");
      button.classList.remove("recording");
      timer.hidden = true;
      $("wa-record-cancel").hidden = true;
      if (cancelled) {
        say("wa-status", "Recording discarded.");
        return;
      }
      await act("wa-status", "Encoding the voice note…", async () => {
        const recorded = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
        const samples = await decodeTo16k(await recorded.arrayBuffer());
        if (!samples.length) throw new Error("the recording is empty");
        say("wa-status", "Sending the voice note…");
        return postVoice(phone, encodeWav(samples));
      });
    });
    ui.cancelRecording = () => {
      cancelled = true;
      recorder.stop();
    };
    recorder.start(250);
    ui.recorder = recorder;
    button.textContent = "■ Stop and send";
    button.setAttribute("aria-pressed", "true");
    button.classList.add("recording");
    timer.hidden = false;
    timer.textContent = "0:00";
    $("wa-record-cancel").hidden = false;
    say("wa-status", "Recording… press again to send.");
    ui.recordTick = setInterval(() => {
      const s = Math.floor((Date.now() - started) / 1000);
      timer.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    }, 250);
    ui.recordLimit = setTimeout(() => ui.recorder === recorder && recorder.stop(), 120000);
  }

  async function uploadVoice() {
    const input = $("wa-voice-file");
    const file = input.files[0];
    if (!file) return;
    const phone = ui.selected;
    await act("wa-status", `Sending ${file.name} as a voice note…`, async () => {
      requireCustomer();
      const data = await file.arrayBuffer();
      const head = new Uint8Array(data.slice(0, 36));
      const tag = String.fromCharCode(...head.slice(0, 4));
      const pcm16Wav = tag === "RIFF" && head[20] === 1 && head[34] === 16;
      if (tag === "OggS") return postVoice(phone, new Blob([data], { type: "audio/ogg; codecs=opus" }));
      if (pcm16Wav) return postVoice(phone, new Blob([data], { type: "audio/wav" }));
      // Anything else the browser can decode (MP3, WebM, M4A, float WAV…) becomes a WAV here.
      return postVoice(phone, encodeWav(await decodeTo16k(data)));
    });
    input.value = "";
  }

  // ---------------------------------------------------------- agent pane

  const EVENT_LABELS = {
    "participant.joined": "joined the chat",
    "participant.left": "left the chat",
    "participant.idle": "is idle",
    "participant.returned": "is back",
    typing: "is typing…",
    "chat.ended": "Chat ended",
    "transfer.succeeded": "Transfer succeeded",
    "transfer.failed": "Transfer failed",
  };

  function roleName(role, phone) {
    if (role === "CUSTOMER") return nameOf(phone);
    if (role === "AGENT") return "Agent";
    if (role === "SYSTEM") return "System";
    if (role === "CUSTOM_BOT") return "Bot";
    return role ? role[0] + role.slice(1).toLowerCase() : "";
  }

  function activeChat(conv) {
    if (!conv) return null;
    return [...conv.chats].reverse().find((c) => !c.ended) || null;
  }

  function renderAgentPane(phone, conv) {
    const chats = conv ? conv.chats : [];
    const active = activeChat(conv);
    const latest = chats.at(-1);
    $("agent-title").textContent = phone ? `chat with ${nameOf(phone)}` : "No chat";
    const status = !phone
      ? "No customer selected."
      : !chats.length
        ? "No chat yet: the customer's first message opens one."
        : active
          ? `Chat ${active.contact_id.slice(0, 8)} is open${chats.length > 1 ? ` (${chats.length} chats with this customer)` : ""}.`
          : `The chat ended. The customer's next message opens a new one.`;
    const statusLine = $("agent-chat-status");
    if (statusLine.textContent !== status) statusLine.textContent = status;
    statusLine.dataset.state = !chats.length ? "none" : active ? "open" : "ended";
    $("agent-pane").dataset.contactId = active ? active.contact_id : latest ? latest.contact_id : "";
    enableComposer(["agent-text", "agent-send", "agent-file", "agent-typing", "agent-end", "qr-send"], Boolean(active));

    // Customer messages in Connect matched to what the console sent, for their trace.
    const sentTexts = new Map();
    if (conv) for (const m of conv.whatsapp) if (m.direction === "in" && m.text && m.trace_id && !sentTexts.has(m.text)) sentTexts.set(m.text, m.trace_id);

    const entries = [];
    for (const chat of chats) {
      const receipts = {};
      for (const item of chat.items) {
        const event = item.kind === "EVENT" ? eventName(item) : "";
        if (event === "message.delivered" || event === "message.read") {
          try {
            const id = JSON.parse(item.content).messageId;
            if (id && receipts[id] !== "read") receipts[id] = event.slice(8);
          } catch {
            /* not a receipt after all */
          }
        }
      }
      entries.push({
        key: `chat-${chat.contact_id}`,
        sig: JSON.stringify([chat.contact_id, chat.ended, chat.items[0]?.at_ms]),
        build: () =>
          el(
            "div",
            { class: "chat-divider", "data-testid": "agent-chat", "data-contact-id": chat.contact_id, "data-ended": String(chat.ended) },
            el("span", { text: `Chat ${chat.contact_id.slice(0, 8)}${chat.items[0] ? ` · ${clock(chat.items[0].at_ms)}` : ""}${chat.ended ? " · ended" : " · open"}` }),
          ),
      });
      for (const item of chat.items) {
        const event = item.kind === "EVENT" ? eventName(item) : "";
        if (event === "message.delivered" || event === "message.read") continue;
        const trace = ui.agentTraces[item.id] || (item.role === "CUSTOMER" && item.kind === "MESSAGE" ? sentTexts.get(item.content) : undefined);
        entries.push({
          key: item.id,
          sig: JSON.stringify([item, receipts[item.id] || "", trace || ""]),
          build: () => agentItem(item, phone, receipts[item.id], trace),
        });
      }
    }
    if (!entries.length && phone) entries.push({ key: "empty", sig: "empty", build: () => el("p", { class: "empty", text: "Nothing here yet." }) });
    reconcile($("agent-messages"), entries);
  }

  const eventName = (item) => String(item.content_type || "").replace(/^application\/vnd\.amazonaws\.connect\.event\./, "");

  function agentItem(item, phone, receipt, trace) {
    const role = String(item.role || "").toLowerCase();
    if (item.kind === "EVENT") {
      const event = eventName(item);
      const who = roleName(item.role, phone);
      const label = EVENT_LABELS[event] || event;
      return el(
        "p",
        { class: `event role-${role}`, "data-testid": "agent-item", "data-id": item.id, "data-kind": item.kind, "data-role": item.role, "data-event": event },
        el("span", { text: event === "chat.ended" || event.startsWith("transfer") ? label : `${who} ${label}` }),
        " ",
        el("time", { text: clock(item.at_ms) }),
      );
    }
    const node = el("article", {
      class: `item role-${role}${item.notice ? " notice" : ""}`,
      "data-testid": "agent-item",
      "data-id": item.id,
      "data-kind": item.kind,
      "data-role": item.role,
      "data-content-type": item.content_type,
    });
    node.append(el("header", { class: "who", text: item.notice ? "Parley notice · agents only" : roleName(item.role, phone) }));
    if (item.notice) {
      node.append(el("p", { class: "body", "data-testid": "agent-notice", text: item.notice.text || JSON.stringify(item.notice) }));
      if (item.notice.kind) node.append(el("p", { class: "notice-kind", text: item.notice.kind }));
    } else if (item.kind === "ATTACHMENT") {
      if (item.attachment) {
        node.append(mediaView(`/api/connect-attachment/${encodeURIComponent(item.attachment.id)}`, item.attachment.mime_type, item.attachment.name, ""));
        node.append(el("p", { class: "attachment-meta", "data-testid": "agent-attachment", text: `${item.attachment.name} · ${item.attachment.mime_type} · ${bytes(item.attachment.size || 0)}` }));
      } else {
        node.append(el("p", { class: "body muted", text: "Attachment (uploading…)" }));
      }
    } else if (item.content_type === "text/markdown") {
      node.append(el("div", { class: "body markdown", "data-testid": "agent-body", html: markdownHtml(item.content) }));
    } else if (/interactive/.test(item.content_type)) {
      node.append(interactiveView(item.content));
    } else if (item.content_type === "application/json") {
      node.append(el("pre", { class: "body json", text: item.content }));
    } else {
      node.append(el("p", { class: "body", "data-testid": "agent-body", html: withLinks(item.content, (t) => t) }));
    }
    const meta = el("footer", { class: "meta" });
    if (item.content_type && item.kind === "MESSAGE" && item.content_type !== "text/plain" && !item.notice) meta.append(el("span", { class: "tag", text: item.content_type.replace("application/vnd.amazonaws.connect.message.", "") }));
    meta.append(el("time", { datetime: new Date(item.at_ms).toISOString(), text: clock(item.at_ms) }));
    if (trace) meta.append(traceButton(trace, `this ${item.role === "AGENT" ? "reply" : "message"}`));
    if (receipt) meta.append(el("span", { class: `receipt ${receipt}`, "data-testid": "agent-receipt", title: receipt, "aria-label": receipt, text: receipt === "read" ? "✓✓ read" : "✓✓ delivered" }));
    node.append(meta);
    return node;
  }

  function interactiveView(content) {
    let template;
    try {
      template = JSON.parse(content);
    } catch {
      return el("pre", { class: "body json", text: content });
    }
    const data = template?.data?.content || {};
    const elements = data.elements || [];
    return el(
      "div",
      { class: "body interactive", "data-testid": "agent-interactive" },
      el("p", { class: "interactive-title", text: data.title || template.templateType || "Interactive message" }),
      data.subtitle ? el("p", { class: "muted", text: data.subtitle }) : null,
      elements.length
        ? el(
            "ul",
            { class: "chips", "aria-label": `${template.templateType || "options"}` },
            elements.map((e) => el("li", { class: "chip", text: e.title || "" })),
          )
        : null,
    );
  }

  function requireChat() {
    const chat = activeChat(conversation(ui.selected));
    if (!chat) throw new Error("no open chat");
    return chat.contact_id;
  }

  const agentPath = (contact, what) => `/api/agent/${encodeURIComponent(contact)}/${what}`;

  function rememberTrace(answer) {
    if (answer?.item_id && answer.trace_id) {
      ui.agentTraces[answer.item_id] = answer.trace_id;
      store.set("parley.agentTraces", ui.agentTraces);
    }
    return answer;
  }

  async function agentSend(event) {
    event.preventDefault();
    const input = $("agent-text");
    const content = input.value;
    if (!content.trim()) return;
    input.value = "";
    const done = await act("agent-status", "Sending…", async () =>
      rememberTrace(await api("POST", agentPath(requireChat(), "say"), { content_type: $("agent-format").value, content })),
    );
    if (!done) input.value = content;
    input.focus();
  }

  async function agentQuickReply(event) {
    event.preventDefault();
    const title = $("qr-title").value.trim();
    const elements = $("qr-options")
      .value.split("\n")
      .map((s) => s.trim())
      .filter(Boolean)
      .map((t) => ({ title: t }));
    if (!title || !elements.length) {
      say("agent-status", "A quick reply needs a title and at least one option.", true);
      return;
    }
    const template = { templateType: "QuickReply", version: "1.0", data: { content: { title, elements } } };
    await act("agent-status", "Sending the quick reply…", async () =>
      rememberTrace(
        await api("POST", agentPath(requireChat(), "say"), {
          content_type: "application/vnd.amazonaws.connect.message.interactive",
          content: JSON.stringify(template),
        }),
      ),
    );
  }

  async function agentAttach() {
    const input = $("agent-file");
    const file = input.files[0];
    if (!file) return;
    await act("agent-status", `Attaching ${file.name}…`, () =>
      api("POST", `${agentPath(requireChat(), "attach")}?${new URLSearchParams({ name: file.name })}`, file, file.type || "application/octet-stream"),
    );
    input.value = "";
  }

  async function agentEvent(name, busy) {
    await act("agent-status", busy, () => api("POST", agentPath(requireChat(), "event"), { event: name }));
  }

  // --------------------------------------------------------------- traces

  function traceButton(traceId, what) {
    return el(
      "button",
      {
        type: "button",
        class: "trace-link",
        "data-testid": "trace-link",
        "data-trace-id": traceId,
        title: `Trace ${traceId}`,
        "aria-label": `Show the trace of ${what}`,
        onclick: (e) => openTrace(traceId, e.currentTarget),
      },
      "⏱ trace",
    );
  }

  async function openTrace(traceId, opener) {
    const dialog = $("trace-dialog");
    ui.trace = { id: traceId, opener, count: -1, stable: 0 };
    $("trace-heading").textContent = `Trace ${traceId}`;
    $("trace-summary").textContent = "Loading…";
    $("trace-waterfall").replaceChildren();
    $("trace-detail").hidden = true;
    dialog.dataset.traceId = traceId;
    if (!dialog.open) dialog.showModal();
    $("trace-close").focus();
    refreshTrace();
  }

  async function refreshTrace() {
    const current = ui.trace;
    if (!current) return;
    clearTimeout(current.timer);
    try {
      const answer = await api("GET", `/api/traces/${encodeURIComponent(current.id)}`);
      if (ui.trace !== current) return;
      const spans = answer.spans || [];
      if (spans.length !== current.count) {
        current.count = spans.length;
        current.stable = 0;
        renderTrace(spans);
      } else current.stable++;
    } catch (error) {
      $("trace-summary").textContent = `Could not load the trace: ${error.message}`;
    }
    // Spans keep arriving while the message is still travelling.
    if (ui.trace === current && current.stable < 20) current.timer = setTimeout(refreshTrace, 1000);
  }

  function closeTrace() {
    const dialog = $("trace-dialog");
    const opener = ui.trace?.opener;
    if (ui.trace) clearTimeout(ui.trace.timer);
    ui.trace = null;
    if (dialog.open) dialog.close();
    if (opener && document.contains(opener)) opener.focus();
  }

  /** A colour per component: Parley's services by name, the AWS services (the SDK's calls) grey-blue. */
  const COLOURS = {
    gateway: "#0969da",
    session: "#b42318",
    "connect-relay": "#bc4c00",
    "whatsapp-sender": "#1a7f37",
    transcoder: "#8250df",
    transcriber: "#0e7c86",
    parley: "#57606a",
  };
  function colour(component) {
    const name = String(component).replace(/^call → /, "");
    if (COLOURS[name]) return COLOURS[name];
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    return `hsl(${200 + (h % 40)} 25% 42%)`;
  }
  /** `parley.session.v1.Session/AppendPending` → `Session/AppendPending`. */
  const shortName = (name) => String(name).replace(/^parley\.[a-z_]+\.v\d+\./, "");

  function renderTrace(spans) {
    const box = $("trace-waterfall");
    if (!spans.length) {
      $("trace-summary").textContent = "No spans yet (they are stored as each hop finishes).";
      box.replaceChildren();
      return;
    }
    const ids = new Set(spans.map((s) => s.span_id));
    const children = new Map();
    const roots = [];
    for (const s of spans) {
      if (s.parent_id && ids.has(s.parent_id)) {
        if (!children.has(s.parent_id)) children.set(s.parent_id, []);
        children.get(s.parent_id).push(s);
      } else roots.push(s);
    }
    const byStart = (a, b) => a.start_us - b.start_us;
    const rows = [];
    const walk = (span, depth) => {
      rows.push({ span, depth });
      for (const child of (children.get(span.span_id) || []).sort(byStart)) walk(child, depth + 1);
    };
    roots.sort(byStart).forEach((r) => walk(r, 0));
    const t0 = Math.min(...spans.map((s) => s.start_us));
    const t1 = Math.max(...spans.map((s) => s.start_us + s.duration_us));
    const total = Math.max(1, t1 - t0);
    const components = [...new Set(spans.map((s) => s.component))];
    $("trace-summary").textContent = `${spans.length} spans · ${fmtMs(total)} end to end · ${components.filter((c) => !c.startsWith("call → ")).join(", ")}`;

    const header = el(
      "div",
      { class: "span-row head", role: "row" },
      el("span", { role: "columnheader", class: "span-label", text: "Component · span" }),
      el(
        "span",
        { role: "columnheader", class: "span-bar-cell axis" },
        [0, 0.25, 0.5, 0.75, 1].map((f) => el("span", { class: "tick", style: `left:${f * 100}%`, text: fmtMs(total * f) })),
      ),
      el("span", { role: "columnheader", class: "span-time", text: "Start · duration" }),
    );
    const body = rows.map(({ span, depth }) => {
      const left = ((span.start_us - t0) / total) * 100;
      const width = (span.duration_us / total) * 100;
      const color = colour(span.component);
      return el(
        "div",
        {
          class: "span-row",
          role: "row",
          "data-testid": "span-row",
          "data-component": span.component,
          "data-name": span.name,
          "data-span-id": span.span_id,
          "data-depth": String(depth),
        },
        el(
          "span",
          { role: "cell", class: "span-label", style: `padding-left:${0.25 + depth * 0.9}rem` },
          el(
            "button",
            {
              type: "button",
              class: "span-button",
              title: `${span.component}: ${span.name}`,
              "aria-label": `${span.component}: ${span.name}, details`,
              onclick: (e) => showSpan(span, t0, e.currentTarget.closest(".span-row")),
            },
            el("span", { class: "component", style: `--c:${color}`, text: span.component }),
            " ",
            el("span", { class: "span-name", text: shortName(span.name) }),
          ),
        ),
        el(
          "span",
          { role: "cell", class: "span-bar-cell" },
          el("span", { class: "span-bar", style: `left:${left}%;width:max(${width}%,2px);background:${color}`, title: `${span.name}: ${fmtMs(span.duration_us)}` }),
        ),
        el("span", { role: "cell", class: "span-time", text: `+${fmtMs(span.start_us - t0)} · ${fmtMs(span.duration_us)}` }),
      );
    });
    box.replaceChildren(header, ...body);
    const selected = ui.trace?.selected && box.querySelector(`[data-span-id="${ui.trace.selected}"]`);
    if (selected) selected.classList.add("selected");
  }

  function showSpan(span, t0, row) {
    for (const other of $("trace-waterfall").querySelectorAll(".span-row.selected")) other.classList.remove("selected");
    row?.classList.add("selected");
    if (ui.trace) ui.trace.selected = span.span_id;
    const detail = $("trace-detail");
    const skip = new Set(["busy_ns", "idle_ns", "code.file.path", "code.line.number", "thread.id", "thread.name"]);
    const attrs = Object.entries(span.attributes || {}).filter(([k]) => !skip.has(k));
    detail.replaceChildren(
      el("h3", { text: `${span.component} · ${span.name}` }),
      el(
        "dl",
        {},
        [
          ["start", `+${fmtMs(span.start_us - t0)}`],
          ["duration", fmtMs(span.duration_us)],
          ["span", span.span_id],
          ["parent", span.parent_id || "—"],
          ...attrs,
        ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]),
      ),
    );
    detail.hidden = false;
  }

  // ------------------------------------------------------------ wiring

  function addCustomer(event) {
    event.preventDefault();
    const phone = $("new-phone").value.replace(/[^0-9]/g, "");
    const name = $("new-name").value.trim();
    if (phone.length < 6 || phone.length > 20) {
      say("wa-status", "A WhatsApp number is 6 to 20 digits.", true);
      $("new-phone").focus();
      return;
    }
    ui.added[phone] = name || ui.added[phone] || `Customer ${phone.slice(-4)}`;
    store.set("parley.customers", ui.added, localStorage);
    $("new-phone").value = "";
    $("new-name").value = "";
    ui.selected = null;
    select(phone);
    $("wa-text").focus();
  }

  function wire() {
    $("add-customer").addEventListener("submit", addCustomer);
    $("wa-text-form").addEventListener("submit", sendText);
    $("wa-file-form").addEventListener("submit", sendFile);
    $("wa-location-form").addEventListener("submit", sendLocation);
    $("wa-record").addEventListener("click", toggleRecording);
    $("wa-record-cancel").addEventListener("click", () => ui.cancelRecording?.());
    $("wa-voice-file").addEventListener("change", uploadVoice);
    $("agent-text-form").addEventListener("submit", agentSend);
    $("agent-text").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $("agent-text-form").requestSubmit();
      }
    });
    $("qr-form").addEventListener("submit", agentQuickReply);
    $("agent-file").addEventListener("change", agentAttach);
    $("agent-typing").addEventListener("click", () => agentEvent("typing", "Typing…"));
    $("agent-end").addEventListener("click", () => agentEvent("chat.ended", "Ending the chat…"));
    $("trace-close").addEventListener("click", closeTrace);
    $("trace-dialog").addEventListener("close", () => ui.trace && closeTrace());
    $("trace-dialog").addEventListener("click", (e) => {
      if (e.target === $("trace-dialog")) closeTrace();
    });
    window.addEventListener("hashchange", () => {
      const phone = decodeURIComponent(location.hash.slice(1));
      if (phone && customers().some((c) => c.phone === phone)) select(phone);
    });
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (/^[0-9]{6,20}$/.test(wanted) && !ui.added[wanted]) ui.added[wanted] = `Customer ${wanted.slice(-4)}`;
    render();
    poll();
  }

  // For tests and the curious: the console's own view of things.
  window.parleyConsole = { ui, poll, whatsappHtml, markdownHtml, encodeWav };
  wire();
})();
