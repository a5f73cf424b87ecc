// Blur chat names before a debug screenshot (pixels cannot be masked afterwards): arguments (css).
const s = document.createElement('style');
s.id = '__wabulk_hide';
s.textContent = arguments[0];
document.head.appendChild(s);
return true;
