// Library (prepended to scripts that say "@requires matches"). Selector candidates arrive as
// [kind, expression] pairs ("css" | "xpath") from wabulk/selectors.py; no script carries its own selector.

// Every element one candidate finds under `root` (default: the document), in document order; none when
// this browser cannot parse it (a candidate written for another era must not end the search).
function matches(kind, expr, root) {
  const base = root || document;
  try {
    if (kind === 'css') return Array.from(base.querySelectorAll(expr));
    const r = document.evaluate(expr, base, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
    const out = [];
    for (let j = 0; j < r.snapshotLength; j++) out.push(r.snapshotItem(j));
    return out;
  } catch (e) { return []; }
}

// Whether `el` itself matches one CSS candidate (XPath candidates: only through `matches`).
function isMatch(el, kind, expr) {
  if (kind !== 'css' || !el || el.nodeType !== 1) return false;
  try { return el.matches(expr); } catch (e) { return false; }
}

function visible(el) { return !!(el && el.isConnected && el.getClientRects().length); }

// The first element of the first candidate that finds one under `root` (optionally: only visible ones).
function firstOf(cands, root, onlyVisible) {
  for (const [kind, expr] of cands) {
    const found = matches(kind, expr, root).filter(e => !onlyVisible || visible(e));
    if (found.length) return found[0];
  }
  return null;
}

// Every element any candidate finds under `root`, deduplicated, in document order.
function allOf(cands, root) {
  const out = [];
  for (const [kind, expr] of cands) {
    for (const el of matches(kind, expr, root)) if (!out.includes(el)) out.push(el);
  }
  out.sort((a, b) => (a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING) ? -1 : 1);
  return out;
}

// Whether `root` itself or anything under it matches one of the candidates.
function hasAny(cands, root) {
  for (const [kind, expr] of cands) {
    if (isMatch(root, kind, expr) || matches(kind, expr, root).length) return true;
  }
  return false;
}

// Whether `el` is inside (or is) an element one of the candidates finds in the document.
function insideAny(el, cands) {
  for (const [kind, expr] of cands) {
    if (kind === 'css') {
      try { if (el.closest(expr)) return true; } catch (e) { /* unparsable here */ }
    } else if (matches(kind, expr).some(c => c.contains(el))) {
      return true;
    }
  }
  return false;
}
