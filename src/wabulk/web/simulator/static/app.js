/* wabulk's WhatsApp Web simulator: the page. Plain JS, no build step.
 *
 * It reproduces the DOM automation code sees on web.whatsapp.com (ids, roles, aria-labels, data-icon,
 * data-ref, data-id, data-pre-plain-text …) for four page versions ("eras": 2023, 2025, 2026, 2026-09), and
 * the flows: startup screen, QR login, /send deep links with the "Starting chat" lookup popup, compose box,
 * send, ticks, attachments, takeover, logout, offline bar, blocked screens, and (2026-09, from live
 * observations) the unsupported-browser refusal, restricted accounts, the What's-new modal, database/storage
 * screens, incoming bubbles and the late file inputs of the attach menu.
 *
 * Login state: the device token lives in localStorage (the browser profile); the server knows which
 * tokens are linked. The page polls /__sim/api/poll every 300 ms for config, commands and tick states.
 */
(function () {
  'use strict';

  var TOKEN_KEY = 'wabulk-sim-device';
  var POLL_MS = 300;
  var LRE = '\u202A', PDF = '\u202C';

  var S = {
    page: hex(16),
    token: localStorage.getItem(TOKEN_KEY),
    cfg: null,
    era: '2026',
    screen: 'boot',       // boot | qr | qr_expired | main | logout | takeover | blocked
    pending: null,        // pending deep link {phone, text}
    lookupCache: {},      // phone -> exists (per page load, like WA's queryWidExists cache)
    openPhone: null,
    rows: {},             // message id -> {el, msg}
    outbox: [],           // messages not yet accepted by the server
    offline: false,
    chatsKey: '',
    mainEl: null,         // the MAIN screen element, kept across takeover/blocked screens
    wrapper: null,
    overlay: null,
    flushing: false,
    pollTimer: null,      // the next scheduled poll
    polling: false,       // a poll request is in flight
    dueAt: 0,             // when a sent message's next tick is due (ms epoch): poll then, not up to 300 ms later
    restricted: false,    // the composer is replaced by the "restricted" block bar
    blocker: null,        // the What's-new dialog while it is shown (it swallows input to everything else)
    whatsNewDone: false,  // shown (and closed) once per page load
    chatsOpened: 0,       // chats opened since the page loaded (the first one's history is slower)
    historyAt: 0,         // when the open chat's history shows (ms epoch)
    historyList: null,    // the open chat's history, held back until then
    historyTimer: null
  };

  // What the server told this page before it talks to it (see server._page): whether to refuse headless UAs.
  var PAGE = (function () {
    var el = document.getElementById('sim-page');
    try { return el ? JSON.parse(el.textContent) : {}; } catch (e) { return {}; }
  })();

  // 2026-09 is the 2026 page as live observations show it; most 2026 traits carry over.
  function isNew() { return S.era === '2026-09'; }
  function is26() { return S.era === '2026' || S.era === '2026-09'; }

  // --- small helpers ------------------------------------------------------------------------------
  function hex(n) {
    var a = new Uint8Array(n / 2);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === 'text') el.textContent = v;
        else if (k.slice(0, 2) === 'on') el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : v);
      });
    }
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(el, c); }); return; }
    el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }

  function icon(name, extra) {
    var attrs = {'data-icon': name, 'aria-hidden': 'true'};
    if (extra) Object.keys(extra).forEach(function (k) { attrs[k] = extra[k]; });
    return h('span', attrs);
  }

  function svgIcon(title, d) {
    var svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', '0 0 16 16');
    var t = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    t.textContent = title;
    var path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
    path.setAttribute('d', d);
    path.setAttribute('fill', 'currentColor');
    svg.appendChild(t); svg.appendChild(path);
    return svg;
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  function digits(s) { return String(s || '').replace(/\D/g, ''); }

  function api(method, path, body) {
    var opts = {method: method, headers: {}};
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) { return {status: r.status, body: j}; });
    });
  }

  function q(params) {
    return Object.keys(params).filter(function (k) { return params[k] !== null && params[k] !== undefined; })
      .map(function (k) { return encodeURIComponent(k) + '=' + encodeURIComponent(params[k]); }).join('&');
  }

  // A display format close to WA's (+CC groups). Tests should match "isn't on WhatsApp", not the spacing.
  function formatPhone(d) {
    d = digits(d);
    if (d.length === 11 && d[0] === '1') return '+1 ' + d.slice(1, 4) + '-' + d.slice(4, 7) + '-' + d.slice(7);
    var three = /^(2[1-9]|3[578]|42|5[09]|6[789]|8[5-9]|9[679])/;
    var one = /^7/;
    var cc = one.test(d) ? 1 : (three.test(d) ? 3 : 2);
    var rest = d.slice(cc);
    if (rest.length <= 4) return '+' + d.slice(0, cc) + ' ' + rest;
    var head = rest.length > 8 ? rest.slice(0, 2) + ' ' + rest.slice(2, -4) : rest.slice(0, -4);
    return '+' + d.slice(0, cc) + ' ' + head + '-' + rest.slice(-4);
  }

  function pad2(n) { return (n < 10 ? '0' : '') + n; }
  function hhmm(t) { var d = new Date(t * 1000); return pad2(d.getHours()) + ':' + pad2(d.getMinutes()); }
  function prePlain(t, who) {
    var d = new Date(t * 1000);
    return '[' + hhmm(t) + ', ' + d.getDate() + '/' + (d.getMonth() + 1) + '/' + d.getFullYear() + '] ' + who + ': ';
  }
  // 2026-09: the account's locale is en-US here, so month first ("[13:57, 6/15/2026] Me: ")
  function prePlainUS(t, who) {
    var d = new Date(t * 1000);
    return '[' + hhmm(t) + ', ' + (d.getMonth() + 1) + '/' + d.getDate() + '/' + d.getFullYear() + '] ' + who + ': ';
  }

  function fmtBytes(n) {
    var gb = 1024 * 1024 * 1024, mb = 1024 * 1024;
    if (n >= gb) return trimNum(n / gb) + ' GB';
    if (n >= mb) return trimNum(n / mb) + ' MB';
    if (n >= 1024) return trimNum(n / 1024) + ' KB';
    return n + ' B';
  }
  function trimNum(x) { return (Math.round(x * 10) / 10).toString(); }

  // --- screens ------------------------------------------------------------------------------------
  function setScreen(name, el) {
    S.screen = name;
    var w = S.wrapper;
    var first = w.firstChild;
    if (first && first !== S.overlay) w.removeChild(first);
    w.insertBefore(el, S.overlay);
  }

  function clearOverlay() {
    S.overlay.textContent = '';
    if (S.blocker) closeWhatsNew();  // a screen change took the What's-new dialog with it
  }

  function startupScreen() {
    var progress = h('progress', {value: '0', max: '100', dir: 'ltr'});
    var text = h('div', {'class': 'loading-text', text: 'Loading your chats [0%]'});
    var logo = h('div', {'class': 'brand'}, icon('wa-logo'), 'WhatsApp');
    var e2e = h('div', {'class': 'e2e'}, icon('lock-small'), 'End-to-end encrypted');
    // 2025+: progress in div[3], text in div[2]; before the 2025-03 "new theme" they were swapped.
    var el = S.era === '2023'
      ? h('div', {'class': 'startup', 'data-screen': 'startup'}, logo, h('div', null, progress), text, e2e)
      : h('div', {'class': 'startup', 'data-screen': 'startup'}, logo, text, h('div', null, progress), e2e);
    el.setProgress = function (p) {
      progress.value = p;
      text.textContent = 'Loading your chats [' + p + '%]';
    };
    return el;
  }

  function runStartup() {
    var el = startupScreen();
    setScreen('boot', el);
    var total = (S.cfg && S.cfg.boot_ms) || 0;
    var start = Date.now();
    return new Promise(function (resolve) {
      (function tick() {
        var stall = S.cfg && S.cfg.stall_boot;
        var frac = total > 0 ? Math.min(1, (Date.now() - start) / total) : 1;
        var p = Math.floor(frac * 100);
        if (stall) { p = Math.min(p, 47); start = Date.now() - 0.47 * total; }
        el.setProgress(p);
        if (p >= 100 && !stall) resolve();
        else setTimeout(tick, Math.max(16, Math.min(100, total / 50)));
      })();
    });
  }

  // QR (logged out) ------------------------------------------------------------------------------
  var qr = {box: null, timer: null, shown: 0, canvas: null};

  function qrScreen() {
    var canvas = h('canvas', {'aria-label': 'Scan this QR code to link a device!', role: 'img',
      width: '228', height: '228'});
    // data-ref appears only once the server issued a ref, so `div[data-ref] > canvas` never reads an empty one
    var box = h('div', {'class': 'qr-box', 'data-testid': 'link-device-qr-code'}, canvas);
    qr.box = box; qr.canvas = canvas; qr.shown = 0;
    if (isNew()) {
      // 2026-09: no reload button; the expired QR's whole container is the thing to click
      box.addEventListener('click', function () {
        if (S.screen === 'qr_expired') { qr.shown = 0; newQr(); }
      });
    }
    var steps = S.era === '2023'
      ? [h('h1', {text: 'Use WhatsApp on your computer'}), h('div', {text: 'To use WhatsApp on your computer:'})]
      : [h('h1', {text: 'Steps to log in'})];
    var el = h('div', {'class': 'landing-wrapper'},
      h('div', {'class': 'landing-header'}, icon('wa-wordmark-refreshed'), 'WhatsApp'),
      h('div', {'class': 'landing-main'},
        h('div', null, steps,
          h('ol', null,
            h('li', {text: 'Open WhatsApp on your phone'}),
            h('li', {text: 'On Android tap Menu, on iPhone tap Settings'}),
            h('li', {text: 'Tap Linked devices, then Link device'}),
            h('li', {text: 'Scan the QR code to confirm'})),
          h('div', {'class': 'phone-login', role: 'button', tabindex: '0', text: 'Log in with phone number'})),
        h('div', null, box, h('div', {'class': 'qr-offline', 'data-sim': 'qr-offline', hidden: true},
          icon('alert-computer'), 'Computer not connected'))));
    return el;
  }

  function drawQr(ref) {
    var ctx = qr.canvas.getContext('2d');
    var n = 29, cell = 228 / n, seed = 0;
    for (var i = 0; i < ref.length; i++) seed = (seed * 31 + ref.charCodeAt(i)) >>> 0;
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, 228, 228); ctx.fillStyle = '#122e31';
    for (var y = 0; y < n; y++) {
      for (var x = 0; x < n; x++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        var finder = (x < 7 && y < 7) || (x > n - 8 && y < 7) || (x < 7 && y > n - 8);
        var on = finder ? (x % 6 === 0 || y % 6 === 0 || (x % 7 > 1 && x % 7 < 5 && y % 7 > 1 && y % 7 < 5))
          : (seed >>> 16) & 1;
        if (on) ctx.fillRect(x * cell, y * cell, cell, cell);
      }
    }
  }

  function newQr() {
    return api('POST', '/__sim/api/qr', {page: S.page}).then(function (r) {
      if (S.screen !== 'qr' && S.screen !== 'qr_expired') return;
      qr.box.setAttribute('data-ref', r.body.ref);
      qr.box.classList.remove('expired');
      var reload = qr.box.querySelector('.reload');
      if (reload) reload.remove();
      drawQr(r.body.ref);
      qr.shown += 1;
      S.screen = 'qr';
      scheduleRotation();
    });
  }

  function scheduleRotation() {
    clearTimeout(qr.timer);
    qr.timer = setTimeout(function () {
      if (S.screen !== 'qr') return;
      if (qr.shown > ((S.cfg && S.cfg.qr_max_rotations) || 5)) expireQr();
      else newQr();
    }, (S.cfg && S.cfg.qr_rotate_ms) || 20000);
  }

  function expireQr() {
    S.screen = 'qr_expired';
    qr.box.classList.add('expired');
    if (isNew()) {
      qr.box.appendChild(h('div', {'class': 'reload overlay'}, icon('refresh-refreshed'),
        h('div', {text: 'Select to reload QR code'})));
      return;
    }
    var btn = h('button', {'aria-label': 'Click to reload QR code', type: 'button',
      onclick: function () { qr.shown = 0; newQr(); }}, icon('refresh-large', {'data-testid': 'refresh-large'}));
    qr.box.appendChild(h('span', {'class': 'reload'}, btn, h('div', {text: 'Click to reload QR code'})));
  }

  function showQr() {
    setScreen('qr', qrScreen());
    clearOverlay();
    updateBar();
    newQr();
  }

  // MAIN -----------------------------------------------------------------------------------------
  var M = {};  // parts of the main screen

  function mainScreen() {
    var era = S.era;
    var search = era === '2023'
      ? h('div', {contenteditable: 'true', role: 'textbox', 'data-tab': '3', title: 'Search input textbox',
          spellcheck: 'true', dir: 'auto'})
      : h('input', {type: 'text', role: 'textbox', 'data-tab': '3', 'aria-label': 'Search or start a new chat',
          placeholder: 'Search or start a new chat', title: 'Search input textbox', autocomplete: 'off'});
    search.addEventListener('input', filterChats);
    search.addEventListener('keydown', function (e) {
      if (e.key === 'Enter') {
        e.preventDefault();
        var row = M.list.querySelector('[role="row"]:not([hidden])');
        if (row) openChat(row.getAttribute('data-sim-phone'));
      }
    });
    M.search = search;
    M.list = h('div', {'aria-label': 'Chat list', role: 'grid', 'aria-rowcount': '0',
      'data-testid': is26() ? 'chat-list' : null, tabindex: '-1'});
    M.bar = h('div', {'class': 'bar-slot'});
    M.sideWrap = h('div', {'class': 'side-wrap'},
      h('div', {id: 'side'},
        h('header', null,
          is26() ? h('h1', {text: 'Chats'}) : h('div', {'class': 'avatar', role: 'button', title: 'Profile'}),
          h('div', {'class': 'header-actions'},
            h('button', {'class': 'icon-btn', 'aria-label': 'New chat', title: 'New chat', type: 'button',
              onclick: openNewChatDrawer}, icon('new-chat-outline')),
            h('button', {'class': 'icon-btn', 'aria-label': 'Menu', title: 'Menu', type: 'button'}, icon('menu')))),
        h('div', {'class': 'search'}, search),
        M.bar,
        h('div', {id: 'pane-side'}, M.list)));
    M.mainWrap = h('div', {'class': 'main-wrap'}, introPanel());
    var el = h('div', {'class': 'two', tabindex: '-1'}, M.sideWrap, M.mainWrap);
    return el;
  }

  function introPanel() {
    var attrs = {'class': 'intro', 'data-sim': 'intro'};
    if (S.era === '2023') attrs['data-asset-intro-image-light'] = 'true';
    return h('div', attrs, icon(S.era === '2023' ? 'intro-md-beta-logo-light' : 'intro-wa-logo'),
      h('h1', {text: S.era === '2023' ? 'WhatsApp Web' : 'Download WhatsApp for Windows'}),
      h('div', {text: 'Send and receive messages without keeping your phone online.'}));
  }

  function filterChats() {
    var term = (M.search.value !== undefined ? M.search.value : M.search.textContent).trim().toLowerCase();
    var d = digits(term);
    Array.prototype.forEach.call(M.list.querySelectorAll('[role="row"]'), function (row) {
      var phone = row.getAttribute('data-sim-phone');
      var label = row.textContent.toLowerCase();
      row.hidden = !!term && !(d && phone.indexOf(d) >= 0) && label.indexOf(term) < 0;
    });
  }

  function renderChats(chats) {
    var key = JSON.stringify(chats.map(function (c) { return [c.phone, c.text, c.status]; }));
    if (key === S.chatsKey) return;
    S.chatsKey = key;
    M.list.textContent = '';
    M.list.setAttribute('aria-rowcount', String(chats.length));
    chats.forEach(function (c, i) {
      var name = LRE + formatPhone(c.phone) + PDF;
      var statusIcon = {pending: 'status-time', sent: 'status-check', delivered: 'status-dblcheck',
        read: 'status-dblcheck'}[c.status];  // none for an incoming or failed last message
      M.list.appendChild(h('div', {role: 'row', 'aria-rowindex': String(i + 1), 'class': 'chat-row',
        'data-sim-phone': c.phone, 'aria-selected': c.phone === S.openPhone ? 'true' : 'false',
        onclick: function () { openChat(c.phone); }},
        h('div', {'data-testid': 'cell-frame-container', tabindex: '-1', role: 'gridcell'},
          h('div', null, h('span', {dir: 'auto', title: name, text: name})),
          h('div', {'class': 'preview'}, statusIcon ? icon(statusIcon) : null, h('span', {dir: 'ltr', title: c.text, text: c.text})))));
    });
    filterChats();
  }

  function openNewChatDrawer() {
    var input = h('input', {type: 'text', role: 'textbox', 'aria-label': 'Search name or number',
      placeholder: 'Search name or number', 'data-tab': '3'});
    var drawer = h('div', {'class': 'drawer', 'data-sim': 'new-chat'},
      h('header', null, h('button', {'class': 'icon-btn', 'aria-label': 'Back', type: 'button',
        onclick: function () { drawer.remove(); }}, icon('back')), h('h1', {text: 'New chat'})),
      h('div', {'class': 'search'}, input));
    input.addEventListener('keydown', function (e) {
      if (e.key !== 'Enter') return;
      e.preventDefault();
      var d = digits(input.value);
      drawer.remove();
      if (d) openChatFlow(d, '');
    });
    M.sideWrap.appendChild(drawer);
    input.focus();
  }

  function showMain() {
    if (!S.mainEl) S.mainEl = mainScreen();
    setScreen('main', S.mainEl);
    updateBar();
    if (S.cfg.whats_new && !S.whatsNewDone) showWhatsNew();
    if (S.pending) {
      var p = S.pending;
      S.pending = null;
      openChatFlow(p.phone, p.text);
    }
  }

  // --- compose box (Lexical-like contenteditable) -------------------------------------------------
  // The text of an editor: text nodes as they are, <br> = "\n", blocks (p/div) joined by "\n". A <br> that
  // ends a block only holds the caret (it draws no line), so it adds nothing -- as innerText does.
  function editorText(root) {
    var out = '', started = false;
    Array.prototype.forEach.call(root.childNodes, function (n) {
      if (isBlock(n)) {
        if (started) out += '\n';
        out += blockText(n);
        started = true;
      } else {
        out += inlineText(n);
        started = true;
      }
    });
    return out;
  }
  function isBlock(n) { return n.nodeType === 1 && /^(P|DIV|LI)$/.test(n.nodeName); }
  function blockText(el) {
    var t = editorText(el);
    var last = lastMeaningful(el);
    if (last && last.nodeName === 'BR' && t.slice(-1) === '\n') t = t.slice(0, -1);
    return t;
  }
  function inlineText(n) {
    if (n.nodeType === 3) return n.data;
    if (n.nodeName === 'BR') return '\n';
    if (n.nodeType === 1) return isBlock(n) ? blockText(n) : editorText(n);
    return '';
  }
  function lastMeaningful(el) {
    var n = el.lastChild;
    while (n && n.nodeType === 3 && n.data === '') n = n.previousSibling;
    if (n && n.nodeType === 1 && n.nodeName !== 'BR' && !isBlock(n) && n.lastChild) return lastMeaningful(n) || n;
    return n;
  }

  function paragraph() { return h('p', {'class': 'selectable-text copyable-text', dir: 'auto'}); }

  // Keep the Lexical shape: one p.selectable-text.copyable-text, holding a <br> when empty. A line break at
  // the very end is followed by one more <br> so the new line is drawn (editorText ignores that one).
  function normalize(box) {
    var p = box.firstChild;
    if (!p || p.nodeName !== 'P' || box.childNodes.length !== 1) {
      setEditorText(box, editorText(box));
      return;
    }
    if (!p.classList.contains('selectable-text')) p.className = 'selectable-text copyable-text';
    if (!lastMeaningful(p)) p.appendChild(document.createElement('br'));
  }

  function setEditorText(box, text) {
    var p = paragraph();
    text.split('\n').forEach(function (line, i) {
      if (i > 0) p.appendChild(document.createElement('br'));
      if (line) p.appendChild(h('span', {'data-lexical-text': 'true', text: line}));
    });
    var last = lastMeaningful(p);
    if (!last || last.nodeName === 'BR') p.appendChild(document.createElement('br'));
    box.textContent = '';
    box.appendChild(p);
    if (document.activeElement === box) caretToEnd(box);
  }

  function caretToEnd(box) {
    var p = box.querySelector('p') || box;
    var r = document.createRange();
    var last = p.lastChild;
    if (last && last.nodeName === 'BR') r.setStartBefore(last);
    else { r.selectNodeContents(p); r.collapse(false); }
    r.collapse(true);
    if (document.activeElement !== box) box.focus();
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(r);
  }

  function insertBreak(box) {
    var sel = window.getSelection();
    if (!sel.rangeCount || !box.contains(sel.anchorNode)) caretToEnd(box);
    var r = sel.getRangeAt(0);
    r.deleteContents();
    var br = document.createElement('br');
    r.insertNode(br);
    var block = br.parentNode;
    while (block && block !== box && !isBlock(block)) block = block.parentNode;
    // a break at the very end draws no line by itself: add the one the caret will sit on
    var after = br.nextSibling;
    while (after && after.nodeType === 3 && after.data === '') after = after.nextSibling;
    if (!after && block && lastMeaningful(block) === br) br.parentNode.appendChild(document.createElement('br'));
    var nr = document.createRange();
    nr.setStartAfter(br);
    nr.collapse(true);
    sel.removeAllRanges();
    sel.addRange(nr);
    box.dispatchEvent(new InputEvent('input', {bubbles: true, inputType: 'insertLineBreak'}));
  }

  function insertPlain(box, text) {
    text = text.replace(/\r\n?/g, '\n');
    text.split('\n').forEach(function (line, i) {
      if (i > 0) insertBreak(box);
      if (line) document.execCommand('insertText', false, line);
    });
  }

  function makeEditor(attrs, onEnter, onChange) {
    var box = h('div', attrs);
    box.setAttribute('contenteditable', 'true');
    box.setAttribute('role', 'textbox');
    box.setAttribute('spellcheck', 'true');
    box.classList.add('composer');
    setEditorText(box, '');
    var busy = false;
    function changed() {
      if (busy) return;
      busy = true;
      try { normalize(box); } finally { busy = false; }
      var text = editorText(box);
      box.classList.toggle('empty', text.length === 0);
      if (onChange) onChange(text);
    }
    box.addEventListener('keydown', function (e) {
      if (e.key !== 'Enter' || e.isComposing) return;
      e.preventDefault();
      if (e.shiftKey) insertBreak(box);
      else onEnter(editorText(box));
    });
    box.addEventListener('beforeinput', function (e) {
      if (e.inputType === 'insertParagraph' || e.inputType === 'insertLineBreak') {
        if (e.isTrusted) { e.preventDefault(); insertBreak(box); }
      } else if (e.inputType === 'insertText' && e.data && e.data.indexOf('\n') >= 0) {
        e.preventDefault(); insertPlain(box, e.data);
      } else if (e.inputType === 'insertFromPaste' && e.dataTransfer) {
        e.preventDefault(); insertPlain(box, e.dataTransfer.getData('text/plain'));
      }
    });
    box.addEventListener('paste', function (e) {
      // trusted Ctrl+V and the synthetic ClipboardEvent automation dispatches both land here
      e.preventDefault();
      var dt = e.clipboardData || window.clipboardData;
      var text = dt ? dt.getData('text/plain') || dt.getData('text') : '';
      if (text) insertPlain(box, text);
    });
    box.addEventListener('input', changed);
    new MutationObserver(function () { changed(); }).observe(box, {childList: true, subtree: true,
      characterData: true});
    box.getText = function () { return editorText(box); };
    box.setText = function (t) { setEditorText(box, t); changed(); };
    changed();
    return box;
  }

  // --- chat pane ----------------------------------------------------------------------------------
  function openChat(phone, text) {
    phone = digits(phone);
    S.openPhone = phone;
    S.rows = {};
    // The history (and the start-of-chat notice) shows only after a while: longer for the first chat after
    // the page loaded (a browser start, or every deep link, which reloads the app).
    var boot = S.chatsOpened++ === 0 && S.cfg && S.cfg.history_boot_ms !== null && S.cfg.history_boot_ms !== undefined;
    S.historyAt = Date.now() + (boot ? S.cfg.history_boot_ms : ((S.cfg && S.cfg.history_ms) || 0));
    S.historyList = null;
    clearTimeout(S.historyTimer);
    S.historyTimer = null;
    var era = S.era;
    var title = LRE + formatPhone(phone) + PDF;
    var labels = {'data-tab': '10', dir: 'auto', 'data-sim-placeholder': 'Type a message', 'aria-multiline': 'true',
      tabindex: '10'};
    if (era === '2023') labels.title = 'Type a message';
    else if (era === '2025') labels['aria-label'] = 'Type a message';
    else {
      labels['aria-label'] = 'Type a message to ' + formatPhone(phone);
      labels['aria-placeholder'] = 'Type a message';
      labels['data-lexical-editor'] = 'true';
    }
    M.sendSlot = h('div', {'class': 'send-wrap'});
    M.compose = makeEditor(labels, function (t) { sendText(t); }, updateSendButton);
    M.conv = h('div', {'class': 'conv', role: 'application', 'aria-label': 'Message list. Press right arrow key on a message to open message context menu.'});
    M.attachWrap = h('div', {'class': 'attach-wrap'});
    var attachBtn = h('button', {'class': 'icon-btn', 'aria-label': 'Attach', title: isNew() ? null : 'Attach',
      type: 'button', onclick: toggleAttachMenu}, icon(era === '2023' ? 'clip' : 'plus-rounded'));
    M.attachWrap.appendChild(attachBtn);
    M.menu = null;
    M.fileInputs = {};
    var header;
    if (isNew()) {
      // 2026-09: the visible number (contacts are not saved) and no title attribute anywhere in the header
      header = h('header', {'data-testid': 'conversation-header'},
        h('div', {'class': 'avatar'}),
        h('div', {'class': 'name', role: 'button', tabindex: '0'},
          h('span', {dir: 'auto', 'data-testid': 'conversation-info-header-chat-title', 'class': 'x1iyjqo2',
            text: formatPhone(phone)})));
    } else {
      header = h('header', {'data-testid': era === '2026' ? 'conversation-header' : null},
        h('div', {'class': 'avatar', title: 'Profile details', role: 'button'}),
        h('div', {'class': 'name'}, h('span', {dir: 'auto', title: title, 'class': 'ggj6brxn', text: title})));
    }
    M.composeWrap = h('div', {'class': 'compose-wrap'}, M.attachWrap,
      h('div', {'class': 'input-wrap'}, M.compose), M.sendSlot);
    M.footer = h('footer', null, M.composeWrap);
    M.blockBar = null;
    var main = h('div', {id: 'main'}, header, M.conv, M.footer);
    M.mainWrap.textContent = '';
    M.mainWrap.appendChild(main);
    if (S.cfg.file_inputs_always) {
      if (isNew()) ATTACH_ITEMS.forEach(function (it) { if (it.kind) fileInput(it.kind); });
      else buildMenu(false);
    }
    applyRestricted(!!S.cfg.restricted);
    Array.prototype.forEach.call(M.list.querySelectorAll('[role="row"]'), function (r) {
      r.setAttribute('aria-selected', r.getAttribute('data-sim-phone') === phone ? 'true' : 'false');
    });
    updateSendButton(M.compose.getText());
    if (text) M.compose.setText(text);
    caretToEnd(M.compose);
    // earlier messages of this chat, from the server (so history survives reloads and restarts)
    api('GET', '/__sim/api/chat?' + q({token: S.token, phone: phone})).then(function (r) {
      if (S.openPhone === phone && Array.isArray(r.body)) syncChat(r.body);
    });
    S.outbox.forEach(function (m) { if (m.phone === phone) addRow(m); });
  }

  // A restricted account: the composer (and the attach button) give way to a block bar; nothing can be sent.
  // The same composer comes back (text kept) when the restriction lifts.
  function applyRestricted(on) {
    S.restricted = on;
    if (!M.footer) return;
    if (on && !M.blockBar) {
      closeMenu();
      M.blockBar = h('div', {'data-testid': 'block-message', 'class': 'block-bar', role: 'status'},
        h('div', {'data-testid': 'reachout-timelock-compose-bar', 'class': 'x1c4vz4f'},
          icon('lock-refreshed'),
          h('span', {dir: 'auto', text: "Your account on linked devices is restricted. You can't start new chats " +
            'right now.'}),
          h('a', {href: 'https://faq.whatsapp.com/', target: '_blank', text: 'Learn more'})));
      if (M.composeWrap.parentNode) M.footer.removeChild(M.composeWrap);
      M.footer.appendChild(M.blockBar);
    } else if (!on && M.blockBar) {
      M.blockBar.remove();
      M.blockBar = null;
      M.footer.appendChild(M.composeWrap);
    }
  }

  function closeChat() {
    S.openPhone = null;
    M.mainWrap.textContent = '';
    M.mainWrap.appendChild(introPanel());
  }

  function updateSendButton(text) {
    if (!M.sendSlot) return;
    var want = text.length > 0 ? 'send' : 'ptt';
    if (M.sendSlot.getAttribute('data-state') === want) return;
    M.sendSlot.setAttribute('data-state', want);
    M.sendSlot.textContent = '';
    if (want === 'ptt') {
      M.sendSlot.appendChild(h('button', {'class': 'icon-btn', 'aria-label': 'Voice message', type: 'button'},
        icon('ptt')));
    } else {
      M.sendSlot.appendChild(h('button', {'class': 'icon-btn', 'aria-label': 'Send', type: 'button',
        'data-tab': '11', onclick: function () { sendText(M.compose.getText()); }},
        icon(S.era === '2023' ? 'send' : 'wds-ic-send-filled')));
    }
  }

  function sendText(text) {
    if (!text.trim() || S.restricted) return;
    M.compose.setText('');
    queueSend({phone: S.openPhone, text: text, attachment: null});
    M.compose.focus();
  }

  function msgId() { return '3EB0' + hex(16).toUpperCase(); }

  function queueSend(m) {
    m.id = msgId();
    m.at = Date.now() / 1000;
    m.status = 'pending';
    S.outbox.push(m);
    if (m.phone === S.openPhone) addRow(m);
    flush();
  }

  function flush() {
    if (S.flushing || S.offline || !S.outbox.length) return;
    S.flushing = true;
    var m = S.outbox[0];
    var body = {token: S.token, id: m.id, phone: m.phone, text: m.text, attachment: m.attachment,
      kind: kindOf(m)};
    api('POST', '/__sim/api/send', body).then(function (r) {
      S.flushing = false;
      if (r.status === 200) {
        S.outbox.shift();
        m.at = r.body.at;
        setTick(m.id, r.body.status);
        if (r.body.tick_in_ms != null) pollAt(Date.now() + r.body.tick_in_ms);
        flush();
      } else {
        setTimeout(flush, 1000);  // offline (503), blocked, restricted or unlinked: it stays on the clock
      }
    }, function () { S.flushing = false; setTimeout(flush, 1000); });
  }

  function tickEl(status) {
    var label = {pending: ' Pending ', sent: ' Sent ', delivered: ' Delivered ', read: ' Read '}[status];
    if (status === 'failed') {
      // A failed send: a message-fail icon instead of any tick (no aria-label seen in reports)
      var fail = h('span', {'data-icon': 'message-fail', 'class': 'tick fail'});
      if (is26()) fail.appendChild(svgIcon('message-fail', 'M8 1a7 7 0 1 0 0 14A7 7 0 0 0 8 1zm-1 3h2v5H7zm0 6h2v2H7z'));
      return fail;
    }
    if (is26()) {
      var title = {pending: 'wds-ic-pending', sent: 'wds-ic-delivered', delivered: 'wds-ic-read',
        read: 'wds-ic-read'}[status];
      var svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      svg.setAttribute('viewBox', '0 0 16 11');
      var t = document.createElementNS('http://www.w3.org/2000/svg', 'title');
      t.textContent = title;
      var path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
      path.setAttribute('d', status === 'pending' ? 'M8 1a5 5 0 1 0 0 10A5 5 0 0 0 8 1z'
        : (status === 'sent' ? 'M2 6l3 3 7-7' : 'M1 6l3 3 7-7M6 9l7-7'));
      path.setAttribute('stroke', 'currentColor'); path.setAttribute('fill', 'none');
      svg.appendChild(t); svg.appendChild(path);
      var span = h('span', {'aria-label': label, 'class': 'tick' + (status === 'read' ? ' read' : '')});
      span.appendChild(svg);
      return span;
    }
    var iconName = {pending: 'msg-time', sent: 'msg-check', delivered: 'msg-dblcheck', read: 'msg-dblcheck'}[status];
    return h('span', {'data-icon': iconName, 'aria-label': label, 'class': 'tick' + (status === 'read' ? ' read' : '')});
  }

  // What a message is: "text", or the attachment's kind (the log records it as ``kind``).
  function kindOf(m) {
    if (m.kind) return m.kind;
    if (!m.attachment) return 'text';
    if (m.asDocument) return 'document';
    var major = String(m.attachment.type || '').split('/')[0];
    return ['image', 'video', 'audio'].indexOf(major) >= 0 ? major : 'document';
  }

  function addRow(m) {
    if (S.rows[m.id]) return S.rows[m.id];
    if (isNew()) return addRowNew(m);
    var era = S.era;
    var out = m.dir !== 'in';
    var dataId = era === '2026' ? m.id : (out ? 'true_' : 'false_') + m.phone + '@c.us_' + m.id;
    var meta = h('div', {'data-testid': 'msg-meta', 'class': 'meta'},
      h('span', {'class': 'time', dir: 'auto', text: hhmm(m.at)}),
      out ? h('div', {'class': 'status'}, tickEl(m.status)) : null);
    var parts = [];
    if (m.attachment) {
      var a = m.attachment, media;
      if (m.objectUrl && /^image\//.test(a.type)) media = h('img', {src: m.objectUrl, alt: a.name});
      else media = icon(/^video\//.test(a.type) ? 'media-play' : (/^image\//.test(a.type) ? 'media-image' : 'document-generic'));
      parts.push(h('div', {'class': 'media', 'data-testid': /^(image|video)\//.test(a.type) && !m.asDocument ? 'media-msg' : 'document-msg'},
        media, h('span', {'class': 'doc-name', title: a.name, text: a.name}),
        h('span', {'class': 'doc-size', text: fmtBytes(a.size)})));
    }
    if (m.text) {
      parts.push(h('div', {'class': 'copyable-text', 'data-pre-plain-text': prePlain(m.at, out ? 'Me' : senderName(m))},
        h('div', null, h('span', {dir: 'auto', 'class': 'selectable-text copyable-text'},
          h('span', {text: m.text})))));
    }
    var bubble = h('div', {'class': 'bubble'}, parts, meta);
    var inner = era === '2026'
      ? h('div', {'class': 'x9f619 ' + (out ? 'xout' : 'xin')},
          h('span', {'class': 'visually-hidden', 'aria-label': out ? 'You:' : senderName(m) + ':'}),
          icon(out ? 'tail-out' : 'tail-in'), bubble)
      : h('div', {'class': (out ? 'message-out' : 'message-in') + ' focusable-list-item'},
          icon(out ? 'tail-out' : 'tail-in'), bubble);
    var row = h('div', {role: 'row', 'class': 'msg-row ' + (out ? 'out' : 'in')},
      h('div', {'data-id': dataId, 'data-testid': 'conv-msg-' + dataId, tabindex: '-1'}, inner));
    M.conv.appendChild(row);
    M.conv.scrollTop = M.conv.scrollHeight;
    S.rows[m.id] = {el: row, msg: m, meta: meta};
    return S.rows[m.id];
  }

  function senderName(m) { return m.name || formatPhone(m.phone); }

  // 2026-09 (live DOM, 2026-09-01): no message-in/out class; a hidden author label on every bubble; the tail
  // only on the first bubble of a series; the text span carries data-testid tokens (no selectable-text
  // class); msg-meta (time + tick) sits INSIDE the copyable-text container; data-id is the bare id (or absent).
  function addRowNew(m) {
    var out = m.dir !== 'in';
    var kind = kindOf(m);
    var who = out ? 'You' : senderName(m);
    var meta = h('div', {'data-testid': 'msg-meta', 'class': 'meta x1n2onr6'},
      h('span', {'class': 'time x1rg5ohu', dir: 'auto', text: hhmm(m.at)}),
      out ? h('div', {'class': 'status'}, tickEl(m.status)) : null);
    var media = m.attachment ? mediaBlockNew(m, kind) : null;
    var textBlock = null;
    if (m.text && kind !== 'sticker' && kind !== 'audio') {
      textBlock = h('div', {'class': 'copyable-text', 'data-pre-plain-text': prePlainUS(m.at, out ? 'Me' : who)},
        h('div', {'class': 'text-wrap'},
          h('span', {dir: 'auto', 'data-testid': 'selectable-text copyable-text', 'class': '_ao3e x1iyjqo2'},
            h('span', {text: m.text}))),
        meta);
    }
    var bubble = h('div', {'class': 'bubble'}, media, textBlock || meta);
    var inner = h('div', {'class': 'x9f619 ' + (out ? 'xout' : 'xin')},
      h('span', {'class': 'visually-hidden', 'aria-label': who + ':'}), bubble);
    var idAttrs = {tabindex: '-1', 'class': 'x1ey2m1c'};
    if (!S.cfg || S.cfg.bubble_ids !== false) { idAttrs['data-id'] = m.id; idAttrs['data-testid'] = 'conv-msg-' + m.id; }
    var row = h('div', {role: 'row', 'class': 'msg-row ' + (out ? 'out' : 'in')}, h('div', idAttrs, inner));
    row.simAt = m.at;
    row.simDir = out ? 'out' : 'in';
    row.simInner = inner;
    // rows stay in time order (a pending local bubble may already be there when the history arrives)
    var before = null;
    Array.prototype.some.call(M.conv.children, function (r) {
      if (r.simAt !== undefined && r.simAt > m.at) { before = r; return true; }
      return false;
    });
    M.conv.insertBefore(row, before);
    retail();
    M.conv.scrollTop = M.conv.scrollHeight;
    S.rows[m.id] = {el: row, msg: m, meta: meta};
    return S.rows[m.id];
  }

  // The tail is drawn only on the first bubble of a series of bubbles in the same direction.
  function retail() {
    var prev = null;
    Array.prototype.forEach.call(M.conv.children, function (row) {
      if (!row.simDir) return;
      var tail = row.simInner.querySelector(':scope > span[data-icon^="tail-"]');
      var want = row.simDir !== prev;
      if (want && !tail) row.simInner.insertBefore(icon('tail-' + row.simDir), row.simInner.children[1]);
      else if (!want && tail) tail.remove();
      prev = row.simDir;
    });
  }

  function mediaBlockNew(m, kind) {
    var a = m.attachment;
    var img = m.objectUrl && /^image\//.test(a.type) ? h('img', {src: m.objectUrl, alt: ''}) : null;
    if (kind === 'sticker') {
      return h('div', {'data-testid': 'sticker-msg', 'class': 'media sticker'}, img || icon('media-image'));
    }
    if (kind === 'image') return h('div', {'data-testid': 'image-msg', 'class': 'media'}, img || icon('media-image'));
    if (kind === 'video') return h('div', {'data-testid': 'video-msg', 'class': 'media'}, icon('media-play'));
    if (kind === 'audio') {
      return h('div', {'data-testid': 'audio-msg', 'class': 'media'}, icon('audio-play'),
        h('span', {'class': 'doc-name', text: a.name}));
    }
    return h('div', {'data-testid': 'document-msg', 'class': 'media'}, icon('document-generic'),
      h('span', {'class': 'doc-name', title: a.name, text: a.name}), h('span', {'class': 'doc-size', text: fmtBytes(a.size)}));
  }

  function setTick(id, status) {
    var r = S.rows[id];
    if (!r || r.msg.status === status || r.msg.dir === 'in') return;
    r.msg.status = status;
    var slot = r.meta.querySelector('.status');
    slot.textContent = '';
    slot.appendChild(tickEl(status));
  }

  // The start-of-chat notice: the first row of a chat whose whole history is shown (whatsapp-web-dom.md
  // section 6), with neither an author label, a time nor a tick.
  var E2E_NOTICE = 'Messages and calls are end-to-end encrypted. No one outside of this chat, not even ' +
    'WhatsApp, can read or listen to them. Click to learn more.';
  function showStartNotice() {
    if (!M.conv || M.conv.querySelector('[data-sim="e2e"]')) return;
    var row = h('div', {role: 'row', 'class': 'notice-row', 'data-sim': 'e2e'},
      h('div', {'class': 'e2e-notice', role: 'button', tabindex: '0'}, icon('lock-small'),
        h('span', {dir: 'auto', text: E2E_NOTICE})));
    M.conv.insertBefore(row, M.conv.firstChild);
  }

  function syncChat(list) {
    var phone = S.openPhone;
    if (Date.now() < S.historyAt) {  // not yet: keep the newest list and show it when it is due
      S.historyList = list;
      if (!S.historyTimer) {
        S.historyTimer = setTimeout(function () {
          S.historyTimer = null;
          if (S.openPhone === phone && S.historyList) syncChat(S.historyList);
        }, S.historyAt - Date.now() + 5);
      }
      return;
    }
    showStartNotice();
    list.forEach(function (rec) {
      if (S.rows[rec.id]) setTick(rec.id, rec.status);
      else addRow({id: rec.id, phone: rec.phone, text: rec.text, attachment: rec.attachment, at: rec.at,
        status: rec.status, dir: rec.dir, name: rec.name, kind: rec.kind});
    });
  }

  // --- OpenChatFlow: the deep-link lookup ----------------------------------------------------------
  function openChatFlow(phone, text) {
    phone = digits(phone);
    var start = Date.now(), popup = null, shownAt = 0, cancelled = false;
    var timer = setTimeout(function () {
      shownAt = Date.now();
      popup = showPopup({label: 'Starting chat', title: 'Starting chat', spinner: true,
        buttons: [{text: 'Cancel', action: function () { cancelled = true; }}]});
    }, 250);
    return lookup(phone).then(function (exists) {
      clearTimeout(timer);
      var wait = popup ? Math.max(0, 500 - (Date.now() - shownAt)) : 0;
      return sleep(wait).then(function () {
        if (popup) popup.close();
        if (cancelled || (S.screen !== 'main')) return;
        if (!exists) {
          var msg = S.era === '2023' ? 'Phone number shared via url is invalid.'
            : (isNew() ? 'The phone number +' + phone + " isn't on WhatsApp."  // live text, 2026
              : 'The number ' + formatPhone(phone) + " isn't on WhatsApp.");
          showPopup({label: msg, text: msg, buttons: [{text: 'OK', primary: true}]});
          return;
        }
        openChat(phone, text);
      });
    });
  }

  function lookup(phone) {
    if (phone.length < 7 || phone.length > 15) return Promise.resolve(false);
    if (Object.prototype.hasOwnProperty.call(S.lookupCache, phone)) return Promise.resolve(S.lookupCache[phone]);
    return (function attempt() {
      if (S.offline) return sleep(500).then(attempt);  // no network: the popup just keeps spinning
      return api('GET', '/__sim/api/lookup?' + q({phone: phone})).then(function (r) {
        S.lookupCache[phone] = !!r.body.exists;
        return S.lookupCache[phone];
      }, function () { return sleep(500).then(attempt); });
    })();
  }

  // --- popups --------------------------------------------------------------------------------------
  function showPopup(o) {
    var popupEl, dialog;
    function close() { if (dialog.parentNode) dialog.remove(); }
    var buttons = (o.buttons || []).map(function (b) {
      var attrs = {'class': b.primary ? 'primary' : '', onclick: function () { close(); if (b.action) b.action(); }};
      if (S.era === '2023') { attrs.role = 'button'; attrs.tabindex = '0'; }
      else attrs.type = 'button';
      return h(S.era === '2023' ? 'div' : 'button', attrs, h('div', {text: b.text}));
    });
    popupEl = h('div', {'data-animate-modal-popup': 'true', 'aria-label': o.label, role: o.role || null},
      h('div', {'data-animate-modal-body': 'true'},
        o.title ? h('div', {'class': 'popup-title', text: o.title}) : null,
        o.spinner ? h('div', {'class': 'spinner', role: 'progressbar'}) : null,
        o.text ? h('div', {'class': 'popup-text', text: o.text}) : null,
        o.body || null,
        h('div', {'class': 'popup-buttons'}, buttons)));
    dialog = h('div', {role: 'dialog', tabindex: '-1'}, popupEl);
    S.overlay.appendChild(dialog);
    var first = dialog.querySelector('.primary');
    if (first) first.focus();
    return {el: dialog, close: close};
  }

  // --- attachments ---------------------------------------------------------------------------------
  // 2026-09 (2026 bots): the menu has eight items and NO file input until an item is chosen; choosing one
  // adds its input (kept in the DOM afterwards) and opens the native file chooser with input.click().
  var ATTACH_ITEMS = [
    {label: 'Document', icon: 'document-filled-refreshed', kind: 'document', accept: '*', multiple: true},
    {label: 'Photos & videos', icon: 'media-filled-refreshed', kind: 'media', accept: 'image/*,video/*,image/webp',
      multiple: true},
    {label: 'Camera', icon: 'camera-filled-refreshed'},
    {label: 'Audio', icon: 'headphones-filled-refreshed', kind: 'audio', accept: 'audio/*', multiple: true},
    {label: 'Contact', icon: 'person-filled-refreshed'},
    {label: 'Poll', icon: 'poll-filled-refreshed'},
    {label: 'Event', icon: 'event-filled-refreshed'},
    {label: 'New sticker', icon: 'sticker-filled-refreshed', kind: 'sticker', accept: 'image/*'}
  ];

  function fileInput(kind) {
    if (M.fileInputs[kind] && M.fileInputs[kind].isConnected) return M.fileInputs[kind];
    var item = ATTACH_ITEMS.filter(function (it) { return it.kind === kind; })[0];
    var input = h('input', {type: 'file', accept: item.accept, multiple: item.multiple || null,
      style: 'display: none;'});
    input.addEventListener('change', function () { onFiles(input, kind); });
    M.fileInputs[kind] = input;
    M.attachWrap.appendChild(input);
    return input;
  }

  function buildMenuNew() {
    M.menu = h('div', {'class': 'attach-menu', role: 'menu', 'aria-label': 'Attach'},
      h('ul', null, ATTACH_ITEMS.map(function (it) {
        return h('li', {role: 'menuitem', tabindex: '0', 'aria-label': it.label, onclick: function () {
          closeMenu();
          if (it.kind) fileInput(it.kind).click();  // the file chooser (needs the click's user activation)
        }}, icon(it.icon), h('span', {text: it.label}));
      })));
    M.attachWrap.appendChild(M.menu);
  }

  function buildMenu(open) {
    if (isNew()) { if (open && !M.menu) buildMenuNew(); return; }
    if (M.menu) { M.menu.classList.toggle('closed', !open); return; }
    var mediaAccept = is26() ? 'image/*' : 'image/*,video/mp4,video/3gpp,video/quicktime';
    var docInput = h('input', {type: 'file', accept: '*', multiple: true, style: 'display: none;'});
    var mediaInput = h('input', {type: 'file', accept: mediaAccept, multiple: true, style: 'display: none;'});
    docInput.addEventListener('change', function () { onFiles(docInput, 'document'); });
    mediaInput.addEventListener('change', function () { onFiles(mediaInput, 'media'); });
    M.menu = h('div', {'class': 'attach-menu' + (open ? '' : ' closed'), role: 'menu'},
      h('button', {role: 'menuitem', 'aria-label': 'Document', type: 'button',
        onclick: function (e) { if (e.target !== docInput) docInput.click(); }},
        icon('document-filled-refreshed'), h('span', {text: 'Document'}), docInput),
      h('button', {role: 'menuitem', 'aria-label': 'Photos & videos', type: 'button',
        onclick: function (e) { if (e.target !== mediaInput) mediaInput.click(); }},
        icon('media-filled-refreshed'), h('span', {text: 'Photos & videos'}), mediaInput));
    M.attachWrap.appendChild(M.menu);
  }

  function closeMenu() {
    if (!M.menu) return;
    if (S.cfg.file_inputs_always && !isNew()) M.menu.classList.add('closed');
    else { M.menu.remove(); M.menu = null; }
  }

  function toggleAttachMenu() {
    if (M.menu && !M.menu.classList.contains('closed')) closeMenu();
    else buildMenu(true);
  }

  function onFiles(input, kind) {
    var files = Array.prototype.slice.call(input.files || []);
    if (!files.length) return;
    var file = files[0];
    input.value = '';
    closeMenu();
    // fetch the limits now, so a config change made just before is never missed by a poll
    api('GET', '/__sim/config').then(function (r) { if (r.status === 200) S.cfg = r.body; }, function () {})
      .then(function () {
        var err = checkFile(file, kind);
        if (err) showPopup({label: err, text: err, buttons: [{text: 'OK', primary: true}]});
        else if (kind === 'sticker') sendSticker(file);
        else showPreview(file, kind);
      });
  }

  // A file given to the "New sticker" input goes out as a sticker at once: no preview, no caption (the
  // compose box keeps its text).
  function sendSticker(file) {
    queueSend({phone: S.openPhone, text: '', kind: 'sticker', objectUrl: URL.createObjectURL(file),
      attachment: {name: file.name, size: file.size, type: file.type || 'application/octet-stream'}});
  }

  function checkFile(f, kind) {
    var type = f.type || '';
    if (f.size === 0) return '1 file you tried adding has no content.';
    if ((kind === 'sticker' && !/^image\//.test(type)) || (kind === 'audio' && !/^audio\//.test(type))) {
      return '1 file you tried adding is not supported.';
    }
    if (kind === 'media' || kind === 'sticker') {
      var isImage = /^image\//.test(type);
      var isVideo = isNew() ? /^video\//.test(type) : /^video\/(mp4|3gpp|quicktime)$/.test(type);
      if (!isImage && !isVideo) return '1 file you tried adding is not supported.';
      if (f.size > S.cfg.max_media_bytes) {
        return '1 ' + (isImage ? 'image' : 'video') + ' you tried adding is larger than the ' +
          fmtBytes(S.cfg.max_media_bytes) + ' limit.';
      }
      return null;
    }
    if (f.size > S.cfg.max_doc_bytes) {
      return '1 document you tried adding is larger than the ' + fmtBytes(S.cfg.max_doc_bytes) + ' limit.';
    }
    return null;
  }

  function showPreview(file, kind) {
    if (isNew()) { showPreviewNew(file, kind); return; }
    var url = /^image\//.test(file.type) ? URL.createObjectURL(file) : null;
    var dialog;
    var caption = makeEditor({'aria-label': 'Add a caption…', 'data-tab': '10', dir: 'auto',
      'data-lexical-editor': is26() ? 'true' : null, 'data-sim-placeholder': 'Add a caption'},
      function () { send(); }, null);
    caption.setText(M.compose.getText());
    function send() {
      var text = caption.getText();
      dialog.remove();
      M.compose.setText('');
      queueSend({phone: S.openPhone, text: text, objectUrl: url, asDocument: kind === 'document',
        attachment: {name: file.name, size: file.size, type: file.type || 'application/octet-stream'}});
    }
    dialog = previewDialog(file, url,
      h('div', {'data-testid': 'media-caption-input-container'}, caption),
      h('div', {role: 'button', 'aria-label': 'Send', tabindex: '0', onclick: send}, icon('send')));
    caretToEnd(caption);
  }

  // The preview dialog of every era, shown over the page: a Close button, the file's thumbnail (or a
  // document icon), name and size, and a row with the era's own caption box and send button.
  function previewDialog(file, url, captionBox, sendButton) {
    var dialog = h('div', {role: 'dialog', tabindex: '-1', 'data-testid': 'media-preview'},
      h('div', {'class': 'media-preview'},
        h('div', null, h('div', {role: 'button', 'aria-label': 'Close', tabindex: '0',
          onclick: function () { dialog.remove(); }}, icon('x'))),
        h('div', {'class': 'thumb'}, url ? h('img', {src: url, alt: file.name}) : icon('document-generic'),
          h('div', {text: file.name}), h('div', {text: fmtBytes(file.size)})),
        h('div', {'class': 'caption-row'}, captionBox, sendButton)));
    S.overlay.appendChild(dialog);
    return dialog;
  }

  // 2026-09: the caption box has data-tab="undefined" and aria-label "Add a caption"; the send button is
  // "Send 1 selected" with the wds-ic-send-filled icon. Audio files get no caption box.
  function showPreviewNew(file, kind) {
    var type = file.type || 'application/octet-stream';
    var sendKind = kind === 'document' ? 'document' : (kind === 'audio' ? 'audio'
      : (/^video\//.test(type) ? 'video' : 'image'));
    var url = /^image\//.test(type) && kind !== 'document' ? URL.createObjectURL(file) : null;
    var dialog, caption = null;
    if (kind !== 'audio') {
      caption = makeEditor({'aria-label': 'Add a caption', 'data-tab': 'undefined', dir: 'auto',
        'data-lexical-editor': 'true', 'data-sim-placeholder': 'Add a caption'}, function () { send(); }, null);
      caption.setText(M.compose.getText());
    }
    function send() {
      var text = caption ? caption.getText() : '';
      dialog.remove();
      if (caption) M.compose.setText('');
      queueSend({phone: S.openPhone, text: text, objectUrl: url, kind: sendKind,
        attachment: {name: file.name, size: file.size, type: type}});
    }
    dialog = previewDialog(file, url,
      h('div', {'class': 'caption-wrap'}, caption),
      h('div', {role: 'button', 'aria-label': 'Send 1 selected', tabindex: '0', onclick: send},
        icon('wds-ic-send-filled')));
    if (caption) caretToEnd(caption);
  }

  // --- bars, takeover, logout, blocked ------------------------------------------------------------
  function updateBar(connecting) {
    var qo = document.querySelector('[data-sim="qr-offline"]');
    if (qo) qo.hidden = !S.offline;
    if (!M.bar) return;
    M.bar.textContent = '';
    if (S.offline) {
      M.bar.appendChild(h('div', {'class': 'butterbar', role: 'alert', 'data-testid': 'butterbar'},
        icon('alert-computer'),
        h('div', {'class': 'title', text: 'Computer not connected'}),
        h('div', {'class': 'sub', text: 'Make sure your computer has an active internet connection.'})));
    } else if (connecting) {
      M.bar.appendChild(h('div', {'class': 'butterbar connecting', role: 'status', 'data-testid': 'butterbar'},
        h('div', {'class': 'title', text: 'Connecting'})));
    }
  }

  function setOffline(off) {
    if (off === S.offline) return;
    S.offline = off;
    if (off) { updateBar(); return; }
    updateBar(true);
    setTimeout(function () { if (!S.offline) { updateBar(false); flush(); } }, 1000);
  }

  function showTakeover(kind) {
    var text = kind === 'computer'
      ? 'WhatsApp is open on another computer or browser. Click "Use here" to use WhatsApp in this window.'
      : 'WhatsApp is open in another window. Click "Use here" to use WhatsApp in this window.';
    var el = h('div', {'class': 'panel', 'data-screen': kind === 'computer' ? 'conflict' : 'another-session'});
    setScreen('takeover', el);
    clearOverlay();
    var buttons = kind === 'computer'
      ? [{text: 'Log out', action: function () {
          api('POST', '/__sim/api/logout', {token: S.token}).then(function () { doLogout(); });
        }}]
      : [{text: 'Close', action: function () { location.href = 'about:blank'; }}];
    buttons.push({text: 'Use here', primary: true, action: function () {
      var c = showPopup({label: 'Connecting…', text: 'Connecting…', buttons: []});
      api('POST', '/__sim/api/usehere', {token: S.token}).then(function () { return sleep(1000); })
        .then(function () { c.close(); S.screen = 'main'; showMain(); });
    }});
    showPopup({label: text, text: text, buttons: buttons});
  }

  function doLogout() {
    if (S.screen === 'logout') return;
    clearOverlay();
    setScreen('logout', h('div', {'class': 'panel', 'data-screen': 'logout'},
      h('h1', {text: 'Logging out…'}), h('div', {text: 'Your device was logged out.'})));
    S.outbox = [];
    localStorage.removeItem(TOKEN_KEY);
    S.token = null;
    setTimeout(function () { location.replace('/?post_logout=1'); }, 1000);
  }

  function showBlocked(kind) {
    clearOverlay();
    var el = kind === 'tos_block'
      ? h('div', {'class': 'panel', 'data-screen': 'tos-block', role: 'alert'},
          h('h1', {text: 'This account is not allowed to use WhatsApp'}),
          h('div', {text: 'This account is not allowed to use WhatsApp due to spam.'}),
          h('a', {href: 'https://faq.whatsapp.com/', text: 'Learn more'}))
      : h('div', {'class': 'panel', 'data-screen': 'temp-ban', role: 'alert'},
          h('h1', {text: 'Your account has been temporarily banned'}),
          h('div', {text: 'This account has been temporarily banned from using WhatsApp because it may have ' +
            'violated our Terms of Service. You can use WhatsApp again after the ban ends.'}),
          h('a', {href: 'https://faq.whatsapp.com/', text: 'Learn more'}));
    setScreen('blocked', el);
  }

  // --- polling ------------------------------------------------------------------------------------
  function poll() {
    S.pollTimer = null;
    S.polling = true;
    var params = {page: S.page, token: S.token, screen: S.screen,
      phone: S.screen === 'main' ? S.openPhone : null, chats: S.screen === 'main' ? '1' : null};
    api('GET', '/__sim/api/poll?' + q(params)).then(function (r) {
      handlePoll(r.body, params.phone);
    }, function () {}).then(function () { S.polling = false; schedulePoll(); });
  }

  // The real page gets acks pushed over its websocket; the simulator polls, so it also polls at the moment
  // a tick is due (the send response says when) instead of showing it up to POLL_MS late.
  function schedulePoll() {
    if (S.polling) return;  // the poll in flight schedules the next one when it returns
    var now = Date.now(), delay = POLL_MS;
    if (S.dueAt > now) delay = Math.min(delay, S.dueAt - now + 5);
    else S.dueAt = 0;
    clearTimeout(S.pollTimer);
    S.pollTimer = setTimeout(poll, delay);
  }

  function pollAt(when) {
    if (!S.dueAt || when < S.dueAt || S.dueAt <= Date.now()) S.dueAt = when;
    schedulePoll();
  }

  // ``phone``: the chat open when the poll was asked for; its rows are only for that chat (another may have
  // been opened while the request was in flight).
  function handlePoll(r, phone) {
    if (!r || !r.config) return;
    S.cfg = r.config;
    setOffline(!!r.config.offline);
    if (r.new_token) {
      S.token = r.new_token;
      localStorage.setItem(TOKEN_KEY, r.new_token);
      if (S.screen === 'qr' || S.screen === 'qr_expired') {
        clearTimeout(qr.timer);
        runStartup().then(afterLogin);
      }
      return;
    }
    var loggedInScreens = ['main', 'takeover', 'blocked'];
    if (r.config.page_error && ['main', 'qr', 'qr_expired', 'blocked'].indexOf(S.screen) >= 0) {
      showPageError(r.config.page_error);
      return;
    }
    if (loggedInScreens.indexOf(S.screen) >= 0 && S.token && !r.linked) { doLogout(); return; }
    if (S.screen === 'main' && r.config.blocked) { showBlocked(r.config.blocked); return; }
    if (S.screen === 'blocked' && !r.config.blocked) { showMain(); return; }
    if (S.screen === 'main' && r.takeover) { showTakeover(r.takeover); return; }
    if (S.screen === 'main') {
      if (!!r.config.restricted !== S.restricted) applyRestricted(!!r.config.restricted);
      if (r.chat && S.openPhone && S.openPhone === phone) syncChat(r.chat);
      if (r.chats) renderChats(r.chats);
    }
  }

  function afterLogin() {
    if (S.cfg.page_error) showPageError(S.cfg.page_error);
    else if (S.cfg.blocked) showBlocked(S.cfg.blocked);
    else showMain();
  }

  // "A database error occurred" / "Your browser storage is full": the app is gone until the page reloads
  // (clearing the knob does not bring it back; a reload does). Wording beyond the titles is ours.
  function showPageError(kind) {
    clearOverlay();
    var db = kind === 'database';
    var el = h('div', {'class': 'panel', 'data-screen': db ? 'database-error' : 'storage-full', role: 'alert'},
      h('h1', {text: db ? 'A database error occurred' : 'Your browser storage is full'}),
      h('div', {text: db ? "WhatsApp couldn't open its local database. Reload the page to try again."
        : 'WhatsApp needs more storage space. Free up space on this computer, then reload the page.'}),
      h('button', {type: 'button', 'class': 'primary', onclick: function () { location.reload(); }},
        h('div', {text: 'Reload'})));
    setScreen(db ? 'database_error' : 'storage_full', el);
  }

  // The unsupported-browser page (2026-09 with refuse_headless): no app, no QR, and no requests to the
  // server. The server sends the same DOM itself when the HTTP User-Agent is refused (server.refusal_html).
  function refusedUserAgent(ua) { return /HeadlessChrome|Electron|WhatsApp\//.test(ua); }

  function showUnsupported() {
    var app = document.getElementById('app');
    app.textContent = '';
    app.appendChild(h('div', {'class': 'panel unsupported', 'data-screen': 'unsupported-browser'},
      h('h1', {text: 'WhatsApp works with Google Chrome 100+'}),
      h('div', {text: 'To use WhatsApp, update Chrome or use Mozilla Firefox, Safari, Microsoft Edge or Opera.'})));
    document.documentElement.setAttribute('data-sim-refusal', 'page');
    if (PAGE.sw_caches_refusal && navigator.serviceWorker) {
      navigator.serviceWorker.register('/__sim/sw.js', {scope: '/'}).catch(function () {});
    }
  }

  // "What's new on WhatsApp Web": after boot, once per page load while the knob is on. Until Continue it
  // covers the page; the rest of the page is inert and keys/clicks meant for it are swallowed.
  function showWhatsNew() {
    S.whatsNewDone = true;
    var label = "What's new on WhatsApp Web";
    var cont = h('button', {type: 'button', 'class': 'primary', onclick: function () { closeWhatsNew(); }},
      h('div', {text: 'Continue'}));
    var dialog = h('div', {role: 'dialog', tabindex: '-1', 'aria-modal': 'true', 'data-sim': 'whats-new'},
      h('div', {'data-animate-modal-popup': 'true', 'aria-label': label},
        h('div', {'data-animate-modal-body': 'true'},
          h('div', {'class': 'popup-title', text: label}),
          h('ul', {'class': 'popup-text'},
            h('li', {text: 'A refreshed look for chats and calls.'}),
            h('li', {text: 'Find chats faster with filters.'})),
          h('div', {'class': 'popup-buttons'}, cont))));
    S.blocker = dialog;
    var screen = S.wrapper.firstChild;
    if (screen && screen !== S.overlay) screen.inert = true;
    S.overlay.appendChild(dialog);
    if (document.activeElement && !dialog.contains(document.activeElement)) document.activeElement.blur();
    cont.focus();
  }

  function closeWhatsNew() {
    if (!S.blocker) return;
    S.blocker.remove();
    S.blocker = null;
    Array.prototype.forEach.call(S.wrapper.children, function (c) { c.inert = false; });
    if (S.screen === 'main' && M.compose && M.compose.isConnected) caretToEnd(M.compose);
  }

  ['keydown', 'keypress', 'keyup', 'beforeinput', 'paste', 'cut', 'drop', 'mousedown', 'mouseup', 'click',
    'dblclick', 'pointerdown', 'focusin'].forEach(function (type) {
    document.addEventListener(type, function (e) {
      if (!S.blocker || S.blocker.contains(e.target)) return;
      e.preventDefault();
      e.stopImmediatePropagation();
      if (type === 'focusin' && S.blocker.isConnected) {
        var b = S.blocker.querySelector('button');
        if (b) b.focus();
      }
    }, true);
  });

  // --- boot ---------------------------------------------------------------------------------------
  function parseRoute() {
    var params = new URLSearchParams(location.search);
    var path = location.pathname.replace(/\/+$/, '');
    if (params.get('post_logout') === '1') { localStorage.removeItem(TOKEN_KEY); S.token = null; S.postLogout = true; }
    if (path === '/send' && params.has('phone')) {
      S.pending = {phone: digits(params.get('phone')), text: params.get('text') || ''};
    }
  }

  window.addEventListener('beforeunload', function (e) {
    if (!S.cfg || !S.cfg.beforeunload) return;
    var pendingRow = Object.keys(S.rows).some(function (k) { return S.rows[k].msg.status === 'pending'; });
    if (S.outbox.length || pendingRow) { e.preventDefault(); e.returnValue = ''; return ''; }
  });

  // Stand-in for api.whatsapp.com/send/ (the wa.me landing page): links into the web app.
  function apiLanding() {
    var params = new URLSearchParams(location.search);
    var target = '/send?' + q({phone: digits(params.get('phone')), text: params.get('text') || ''});
    document.title = 'Share on WhatsApp';
    document.getElementById('app').appendChild(h('div', {'class': 'panel', 'data-screen': 'api-landing'},
      h('h3', {text: 'Chat on WhatsApp with ' + formatPhone(params.get('phone'))}),
      h('a', {id: 'action-button', href: target, role: 'button', text: 'Continue to Chat'}),
      h('div', {id: 'fallback_block'}, h('span', {text: "Don't have the app? "}),
        h('a', {href: target, text: 'use WhatsApp Web'}))));
  }

  function boot() {
    var app = document.getElementById('app');
    if (/^\/api-landing\/send\/?$/.test(location.pathname)) { apiLanding(); return; }
    if (PAGE.refuse_headless && refusedUserAgent(navigator.userAgent)) { showUnsupported(); return; }
    S.wrapper = h('div', {'class': 'app-wrapper-web', tabindex: '-1'});
    S.overlay = h('span', {'class': 'overlay-layer'});
    S.wrapper.appendChild(S.overlay);
    app.appendChild(S.wrapper);
    parseRoute();
    api('GET', '/__sim/api/boot?' + q({page: S.page, token: S.token, post_logout: S.postLogout ? '1' : null})).then(function (r) {
      S.cfg = r.body.config;
      S.era = S.cfg.ui_era;
      document.documentElement.setAttribute('data-sim-era', S.era);
      if (r.body.token) { S.token = r.body.token; localStorage.setItem(TOKEN_KEY, r.body.token); }
      var linked = r.body.linked;
      S.offline = !!S.cfg.offline;
      poll();
      return runStartup().then(function () {
        if (S.screen !== 'boot') return;
        if (S.cfg.page_error) showPageError(S.cfg.page_error);
        else if (linked) afterLogin(); else showQr();
      });
    }, function () { app.textContent = ''; setTimeout(boot, 1000); });
  }

  // Test and debugging hook (not part of the real page): the current state in one object.
  window.__wabulkSim = {state: S, editorText: editorText};

  boot();
})();
