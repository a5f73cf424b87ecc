// Undo hide_titles.js.
const s = document.getElementById('__wabulk_hide');
if (s) s.remove();
return true;
