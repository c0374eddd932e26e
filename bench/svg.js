'use strict';
// Horizontal bar charts as standalone SVG, no dependencies.

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function barChart(title, items, { unit = '', log = false, higherIsBetter = false } = {}) {
  const rows = [...items].sort((a, b) => (higherIsBetter ? b.value - a.value : a.value - b.value));
  const labelW = 330;
  const barW = 430;
  const rowH = 24;
  const top = 40;
  const width = labelW + barW + 110;
  const height = top + rows.length * rowH + 20;
  const max = Math.max(...rows.map((r) => r.value));
  const min = Math.min(...rows.map((r) => r.value).filter((v) => v > 0));
  const scale = (v) => {
    if (!log) return (v / max) * barW;
    const lo = Math.log10(min) - 0.3;
    return Math.max(2, ((Math.log10(v) - lo) / (Math.log10(max) - lo)) * barW);
  };
  const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const isFslock = /^fslock/.test(r.label);
    const isFloor = /^C floor/.test(r.label);
    const color = r.bad ? '#c0392b' : isFslock ? '#2e86de' : isFloor ? '#7f8c8d' : '#f39c12';
    parts.push(`<text x="${labelW - 8}" y="${y + 16}" text-anchor="end">${esc(r.label)}</text>`);
    parts.push(
      `<rect x="${labelW}" y="${y + 4}" width="${scale(r.value).toFixed(1)}" height="${rowH - 8}" fill="${color}"/>`,
    );
    parts.push(
      `<text x="${labelW + scale(r.value) + 6}" y="${y + 16}">${fmt(r.value)} ${esc(unit)}${r.bad ? ' (lost updates)' : ''}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

module.exports = { barChart };
