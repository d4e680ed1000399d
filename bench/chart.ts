/**
 * A small SVG generator for the charts in docs/benchmarks.md: grouped
 * horizontal bars, one group per table row, one bar per plotted column.
 * Plain SVG 1.1 with inline attributes only (no scripts, no CSS classes, no
 * external fonts), which is what GitHub renders from an <img>.
 */
import type { Cell, ChartSpec, RecordedTable } from './util.js';

const PALETTE = ['#2f6fdf', '#e0672a', '#3aa55d', '#9b59b6', '#c0392b', '#7f8c8d'];
const WIDTH = 760;
const LABEL_W = 250;
const BAR_H = 14;
const GAP = 10;
const TOP = 44;
const FONT = 'font-family="Helvetica, Arial, sans-serif"';

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function short(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e9) return `${+(n / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(n / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(n / 1e3).toPrecision(3)}k`;
  if (a >= 100) return String(Math.round(n));
  return String(+n.toPrecision(3));
}

/** The columns a chart plots: the spec's, or the first column holding numbers. */
export function chartColumns(t: RecordedTable): number[] {
  const spec = t.chart === false ? undefined : t.chart;
  if (spec?.columns) return [...spec.columns];
  for (let c = 1; c < t.header.length; c++) if (t.rows.some((r) => typeof r[c] === 'number')) return [c];
  return [];
}

/** Whether a table has anything to draw. */
export function chartable(t: RecordedTable): boolean {
  return t.chart !== false && chartColumns(t).some((c) => t.rows.some((r) => typeof r[c] === 'number' && Number.isFinite(r[c])));
}

/** Renders one table as an SVG document. Non-numeric cells ("not installed") are drawn as a labelled gap. */
export function renderChart(t: RecordedTable): string {
  const spec: ChartSpec = t.chart === false || t.chart === undefined ? {} : t.chart;
  const cols = chartColumns(t);
  const values = t.rows.flatMap((r) => cols.map((c) => r[c])).filter((v): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0);
  const max = values.length > 0 ? Math.max(...values) : 1;
  const min = values.length > 0 ? Math.min(...values) : 1;
  const log = spec.log === true && min > 0;
  const plotW = WIDTH - LABEL_W - 80;
  const lo = log ? Math.floor(Math.log10(min)) : 0;
  const hi = log ? Math.ceil(Math.log10(max)) : max;
  const scale = (v: number): number => {
    if (v <= 0) return 0;
    if (log) return hi === lo ? plotW : ((Math.log10(v) - lo) / (hi - lo)) * plotW;
    return (v / (hi || 1)) * plotW;
  };
  const groupH = cols.length * BAR_H + GAP;
  const legendH = cols.length > 1 ? 20 : 0;
  const height = TOP + legendH + t.rows.length * groupH + 34;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}">`);
  out.push(`<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="12" y="22" ${FONT} font-size="15" font-weight="bold" fill="#222">${escapeXml(t.title)}</text>`);
  const unit = spec.unit ?? (cols.length === 1 ? t.header[cols[0]!] ?? '' : '');
  out.push(`<text x="12" y="38" ${FONT} font-size="11" fill="#666">${escapeXml(`${unit}${log ? ' (log scale)' : ''}`)}</text>`);
  let y = TOP;
  if (cols.length > 1) {
    let x = LABEL_W;
    cols.forEach((c, i) => {
      out.push(`<rect x="${x}" y="${y}" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/>`);
      const name = escapeXml(t.header[c] ?? `col ${c}`);
      out.push(`<text x="${x + 14}" y="${y + 9}" ${FONT} font-size="11" fill="#333">${name}</text>`);
      x += 24 + name.length * 6.5;
    });
    y += legendH;
  }
  const x0 = LABEL_W;
  // grid lines: decades on a log axis, quarters on a linear one
  const ticks: number[] = log ? Array.from({ length: hi - lo + 1 }, (_, i) => 10 ** (lo + i)) : [0, 0.25, 0.5, 0.75, 1].map((f) => f * max);
  for (const tv of ticks) {
    const x = x0 + scale(tv);
    out.push(`<line x1="${x.toFixed(1)}" y1="${y - 4}" x2="${x.toFixed(1)}" y2="${y + t.rows.length * groupH}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${x.toFixed(1)}" y="${y + t.rows.length * groupH + 14}" ${FONT} font-size="10" fill="#888" text-anchor="middle">${short(tv)}</text>`);
  }
  for (const r of t.rows) {
    const label = String(r[0] ?? '');
    out.push(`<text x="${x0 - 8}" y="${y + (cols.length * BAR_H) / 2 + 4}" ${FONT} font-size="12" fill="#222" text-anchor="end">${escapeXml(label.length > 38 ? `${label.slice(0, 37)}…` : label)}</text>`);
    cols.forEach((c, i) => {
      const v: Cell | undefined = r[c];
      const by = y + i * BAR_H;
      if (typeof v === 'number' && Number.isFinite(v)) {
        const w = Math.max(1, scale(v));
        out.push(`<rect x="${x0}" y="${by}" width="${w.toFixed(1)}" height="${BAR_H - 2}" fill="${PALETTE[i % PALETTE.length]}"/>`);
        out.push(`<text x="${(x0 + w + 4).toFixed(1)}" y="${by + BAR_H - 4}" ${FONT} font-size="10" fill="#333">${short(v)}</text>`);
      } else if (v !== undefined && v !== '') {
        out.push(`<text x="${x0 + 4}" y="${by + BAR_H - 4}" ${FONT} font-size="10" fill="#999" font-style="italic">${escapeXml(`${t.header[c] ?? ''}: ${String(v)}`)}</text>`);
      }
    });
    y += groupH;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
