// @requires matches text_of
// Every message in the open chat, in page order, read by the 2026 DOM with the older eras still working.
// Direction is decided per message by the author label ("You:" on each of our bubbles, a name on
// theirs), then the tail / old class / old id markers, then the tick (only our messages have one) -
// never by a class alone, since the 2026 page has none. The text is read from the text span only, never
// from a container that also holds the time and the tick's icon title.
// arguments ({rows, idAttr, ownLabels, author, incoming, outgoing, text, pre, preAttr, ticks,
//             tickByLabel, tickByIcon, tickBySvg, kinds: [[kind, candidates]], more, moreTexts,
//             chat, chrome, mediaEls, startTexts}).
const a = arguments[0];
const units = [];
for (const el of allOf(a.rows, null)) {
  if (!units.some(u => u.contains(el))) units.push(el);  // a row and its [data-id] child are one message
}
function idOf(u) {
  if (u.hasAttribute(a.idAttr)) return u.getAttribute(a.idAttr);
  for (const el of u.getElementsByTagName('*')) if (el.hasAttribute(a.idAttr)) return el.getAttribute(a.idAttr);
  return null;
}
function label(el) { return (el.getAttribute('aria-label') || '').trim().toLowerCase(); }
function svgTitles(root) {
  return Array.from(root.getElementsByTagName('title')).map(t => (t.textContent || '').trim());
}
function tickOf(u) {
  const icons = allOf(a.ticks, u);
  // A failed send shows its own icon instead of a tick: it wins over anything else.
  for (const el of [u, ...u.getElementsByTagName('*')]) {
    if (a.tickByIcon[el.getAttribute('data-icon')] === 'failed') return 'failed';
  }
  if (svgTitles(u).some(t => a.tickBySvg[t] === 'failed')) return 'failed';
  for (const el of icons) { const t = a.tickByLabel[label(el)]; if (t) return t; }  // aria-label first
  for (const el of icons) { const t = a.tickByIcon[el.getAttribute('data-icon')]; if (t) return t; }
  for (const el of icons) { for (const s of svgTitles(el)) if (a.tickBySvg[s]) return a.tickBySvg[s]; }
  // A tick with neither label nor known container: its icon name anywhere in the bubble.
  for (const s of svgTitles(u)) if (a.tickBySvg[s]) return a.tickBySvg[s];
  for (const el of u.getElementsByTagName('*')) {
    const t = a.tickByIcon[el.getAttribute('data-icon')];
    if (t) return t;
  }
  return null;
}
function directionOf(u, tick) {
  const author = firstOf(a.author, u, false);  // the first author label is the bubble's own
  if (author) {
    if (a.ownLabels.includes(label(author))) return 'out';
    return 'in';
  }
  if (hasAny(a.incoming, u)) return 'in';
  if (hasAny(a.outgoing, u)) return 'out';
  if (tick) return 'out';
  return null;
}
// "[15:52, 31.08.2026] Name: ", "[1:57 PM, 6/15/2026] ", "[10:31, 2026/09/01] ": the two numbers before
// the year in page order, and the instants each reading (day first / month first / year first) means in
// the browser's time zone, as [earliest, latest] ms (two instants in the repeated hour of a DST change).
function when(pre) {
  const m = /\[(\d{1,2})[:.](\d{2})(?:\s*([AaPp])\.?\s*[Mm]\.?)?,\s*(\d{1,4})[\/.\-](\d{1,2})[\/.\-](\d{1,4})\]/.exec(pre || '');
  if (!m) return null;
  let h = +m[1]; const mi = +m[2];
  if (m[3]) { h = h % 12; if (m[3].toLowerCase() === 'p') h += 12; }
  const p = [+m[4], +m[5], +m[6]];
  function at(y, mo, d) {
    if (y < 100) y += 2000;
    if (mo < 1 || mo > 12 || d < 1 || d > 31) return null;
    const local = new Date(y, mo - 1, d, h, mi);
    if (local.getMonth() !== mo - 1) return null;  // 31/4: no such day
    const utc = Date.UTC(y, mo - 1, d, h, mi);
    const offs = [local.getTime() - 3 * 3600000, local.getTime() + 3 * 3600000]
      .map(t => new Date(t).getTimezoneOffset());
    const ts = offs.map(o => utc + o * 60000);
    return [Math.min(...ts), Math.max(...ts)];
  }
  if (p[0] > 999) return {a: null, b: null, ymd: at(p[0], p[1], p[2]), dm: null, md: null};
  return {a: p[0], b: p[1], ymd: null, dm: at(p[2], p[1], p[0]), md: at(p[2], p[0], p[1])};
}
// Emoji are <img> elements too, with the emoji as alt text (or an emoji class).
function isEmoji(img) {
  const alt = img.getAttribute('alt') || '';
  return /emoji/i.test(img.className || '') || (alt.length > 0 && alt.length <= 8 && !/[A-Za-z0-9]/.test(alt));
}
const out = [];
const isMessage = [];
for (const u of units) {
  const tick = tickOf(u);
  const dir = directionOf(u, tick);
  const textEl = firstOf(a.text, u, false);
  const preEl = firstOf(a.pre, u, false);
  const pre = preEl ? preEl.getAttribute(a.preAttr) : null;
  let kind = null;
  for (const [k, cands] of a.kinds) { if (hasAny(cands, u)) { kind = k; break; } }
  // An image, video or canvas no selector knows (not an emoji inside the text): media of a kind we cannot
  // name, never "text" (a captioned photo would otherwise read as a text message).
  if (!kind) {
    for (const el of allOf(a.mediaEls, u)) {
      if (textEl && textEl.contains(el)) continue;
      if (el.tagName === 'IMG' && isEmoji(el)) continue;
      kind = 'unknown';
      break;
    }
  }
  // A long message is cut with a "Read more" button on the real page.
  const more = allOf(a.more, u).some(b => a.moreTexts.includes((b.textContent || '').trim().toLowerCase()));
  out.push({dir: dir, id: idOf(u), text: textEl ? textOf(textEl) : null, tick: tick, kind: kind,
            pre: pre, when: when(pre), more: more});
  isMessage.push(!!(dir || textEl || pre || kind || tick));
}
// The start-of-chat notice (end-to-end encryption): the first row of a chat whose whole history is shown.
// Found by its text in the chat panel, outside header and footer, not inside a message and before every
// message, so a message quoting it is never taken for it.
function startShown() {
  const panel = firstOf(a.chat, null, false);
  if (!panel) return false;
  const firstMsg = units.find((u, i) => isMessage[i]);
  const chrome = allOf(a.chrome, panel);
  const walker = document.createTreeWalker(panel, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = (n.textContent || '').toLowerCase();
    if (!a.startTexts.some(s => t.includes(s))) continue;
    const el = n.parentElement;
    if (!el || chrome.some(c => c.contains(el)) || !visible(el)) continue;
    if (units.some((u, i) => isMessage[i] && u.contains(el))) continue;
    if (firstMsg && !(el.compareDocumentPosition(firstMsg) & Node.DOCUMENT_POSITION_FOLLOWING)) continue;
    return true;
  }
  return false;
}
// The page's own date order (day/month/year first) for its language, from the browser's formatter.
let order = null;
try {
  const parts = new Intl.DateTimeFormat(navigator.language).formatToParts(new Date(2026, 10, 22));
  const seq = parts.filter(x => ['day', 'month', 'year'].includes(x.type)).map(x => x.type[0]).join('');
  order = {dmy: 'dm', mdy: 'md', ymd: 'ymd'}[seq] || null;
} catch (e) { /* no Intl: no hint */ }
return {messages: out, lang: navigator.language || null, order: order, now: Date.now(), start: startShown()};
