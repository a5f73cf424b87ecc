// @requires matches
// The open chat's identity: the first visible chat title (its title attribute, else its text: the 2026
// header has no title attribute) and whether the chat panel is a node rendered after `mark` was set.
// arguments ({title: candidates, chat: candidates}, token, mark).
const a = arguments[0], token = arguments[1], mark = arguments[2];
const main = firstOf(a.chat, null, false);
let title = null;
const el = firstOf(a.title, null, true);
if (el) title = el.getAttribute('title') || el.textContent || '';
const fresh = !!main && main.__wabulkOpen !== token;
if (mark && main) main.__wabulkOpen = token;
return {main: !!main, fresh: fresh, title: title};
