// @requires matches
// Mark every file input on the page now (so the one a menu item creates next can be told apart):
// arguments (file input candidates, token). Returns how many were marked.
const els = allOf(arguments[0], null);
for (const el of els) el.__wabulkSeen = arguments[1];
return els.length;
