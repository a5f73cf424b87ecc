// @requires matches
// One round trip that reports which selectors match (first matching candidate index), the dialogs'
// texts, the app text outside chats (for takeover/offline/ban wording), the QR payload and the URL.
// Message content (the `skip` candidates: open chat, chat list, message text) is left out so a message
// *saying* "Use here" cannot fool it.
// arguments ({sels: {name: candidates}, dialogs: candidates, skip: candidates, qr: {name, attr}}).
const a = arguments[0];
function firstHit(cands) {
  for (let i = 0; i < cands.length; i++) {
    const el = matches(cands[i][0], cands[i][1]).find(visible);
    if (el) return [i, el];
  }
  return null;
}
const matched = {};
let qrRef = null;
for (const name in a.sels) {
  const hit = firstHit(a.sels[name]);
  matched[name] = hit ? hit[0] : -1;
  if (name === a.qr.name && hit) qrRef = hit[1].getAttribute(a.qr.attr);
}
function skipped(n) { return a.skip.some(([kind, expr]) => isMatch(n, kind, expr)); }
function appText(root) {
  const out = [];
  const w = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT, {
    acceptNode(n) {
      if (n.nodeType === 1) {
        if (n.tagName === 'SCRIPT' || n.tagName === 'STYLE' || skipped(n)) return NodeFilter.FILTER_REJECT;
        return NodeFilter.FILTER_SKIP;
      }
      return NodeFilter.FILTER_ACCEPT;
    }});
  let n, len = 0;
  while ((n = w.nextNode()) && len < 20000) {
    const t = n.data.trim();
    if (t) { out.push(t); len += t.length; }
  }
  return out.join(' ');
}
const dialogs = [];
for (const d of allOf(a.dialogs, null)) {
  if (!visible(d)) continue;
  const t = ((d.getAttribute('aria-label') || '') + ' ' + (d.innerText || '')).trim();
  if (t && !dialogs.includes(t)) dialogs.push(t);
}
return {matched: matched, dialogs: dialogs, text: document.body ? appText(document.body) : '',
        url: location.href, qr_ref: qrRef, title: document.title};
