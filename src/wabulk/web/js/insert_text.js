// Put one line of text at the end of a contenteditable through insertText (what typing does; keeps any
// Unicode, unlike chromedriver's send_keys outside the BMP): arguments (box, text).
const box = arguments[0], text = arguments[1];
box.focus();
const sel = window.getSelection();
const range = document.createRange();
range.selectNodeContents(box);
range.collapse(false);
sel.removeAllRanges();
sel.addRange(range);
if (text.length) document.execCommand('insertText', false, text);
return true;
