// Empty a contenteditable the way a user would (select all, delete), so the editor keeps its own state:
// arguments (box).
const box = arguments[0];
box.focus();
document.execCommand('selectAll', false, null);
document.execCommand('delete', false, null);
return true;
