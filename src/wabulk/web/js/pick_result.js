// @requires matches
// Click the New chat drawer's result row for a number: a visible row (result candidates) outside the
// open chat and the chat list whose title or text has exactly the wanted digits. Returns whether one was
// clicked. arguments ({rows, titled, exclude: candidates}, digits).
const a = arguments[0], want = arguments[1];
const digits = s => (s || '').replace(/\D/g, '');
for (const [kind, expr] of a.rows) {
  for (const el of matches(kind, expr)) {
    if (insideAny(el, a.exclude) || !visible(el)) continue;
    const titled = firstOf(a.titled, el, false);
    if (digits(titled ? titled.getAttribute('title') : '') === want || digits(el.textContent) === want) {
      el.click();
      return true;
    }
  }
}
return false;
