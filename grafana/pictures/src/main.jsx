// One dashboard drawn with Grafana's own panel components (@grafana/ui, @grafana/data, Apache-2.0)
// from data.json, which grafana/render.py writes: the dashboard's JSON, its time range and each
// panel's query results from a real Prometheus, shaped as Grafana's Prometheus data source
// shapes them. What Grafana's core does between the query and the component (transformations,
// field config defaults and overrides, the stat panel's reduction, the time series panel's
// frame preparation) is redone here with the functions @grafana/data exports.
// When everything is drawn, window.__pictures tells the driver what each panel drew.
import React, { useLayoutEffect } from 'react';
import { createRoot } from 'react-dom/client';
import {
  FieldColorModeId,
  FieldConfigOptionsRegistry,
  FieldType,
  applyFieldOverrides,
  applyNullInsertThreshold,
  cacheFieldDisplayNames,
  createTheme,
  dateTime,
  getDisplayValueAlignmentFactors,
  getFieldDisplayValues,
  nullToValue,
  standardTransformers,
  standardTransformersRegistry,
  transformDataFrame,
} from '@grafana/data';
import { BigValue, GlobalStyles, Icon, PanelChrome, ThemeContext, TimeSeries, VizRepeater } from '@grafana/ui';
// The table Grafana's table panel draws (react-data-grid), published as "unstable".
import { TableNG } from '@grafana/ui/unstable';
// uPlot's own layout rules, which Grafana's core loads with its global styles.
import 'uplot/dist/uPlot.min.css';

// Grafana's grid: 24 columns, 30 px rows, 8 px between panels.
const ROW = 30;
const GAP = 8;
const PAGE_PADDING = 16;

// Grafana's own defaults that a dashboard's JSON leaves out (a panel plugin adds them on load).
const DEFAULT_THRESHOLDS = {
  mode: 'absolute',
  steps: [
    { color: 'green', value: null },
    { color: 'red', value: 80 },
  ],
};
const GRAPH_DEFAULTS = {
  drawStyle: 'line',
  lineInterpolation: 'linear',
  barAlignment: 0,
  lineWidth: 1,
  fillOpacity: 0,
  gradientMode: 'none',
  spanNulls: false,
  insertNulls: false,
  showPoints: 'auto',
  pointSize: 5,
  stacking: { mode: 'none', group: 'A' },
  axisPlacement: 'auto',
  axisLabel: '',
  axisColorMode: 'text',
  axisBorderShow: false,
  axisCenteredZero: false,
  scaleDistribution: { type: 'linear' },
  hideFrom: { legend: false, tooltip: false, viz: false },
  thresholdsStyle: { mode: 'off' },
};
const TABLE_DEFAULTS = {
  align: 'auto',
  cellOptions: { type: 'auto' },
  inspect: false,
};
const PANEL_DEFAULTS = {
  timeseries: { color: { mode: FieldColorModeId.PaletteClassic }, custom: GRAPH_DEFAULTS },
  stat: { color: { mode: FieldColorModeId.Thresholds } },
  table: { color: { mode: FieldColorModeId.Thresholds }, custom: TABLE_DEFAULTS },
};
const STAT_OPTIONS = {
  reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
  orientation: 'auto',
  textMode: 'auto',
  colorMode: 'value',
  graphMode: 'area',
  justifyMode: 'auto',
};

// Grafana's transformations, registered as Grafana's core registers them (one per id).
standardTransformersRegistry.setInit(() =>
  [...new Map(Object.values(standardTransformers).map((t) => [t.id, t])).values()].map((t) => ({
    id: t.id,
    name: t.name,
    description: t.description,
    transformation: t,
    editor: () => null,
  }))
);

const merge = (base, over) => {
  if (over === undefined) return base;
  if (base === null || typeof base !== 'object' || Array.isArray(base)) return over;
  if (over === null || typeof over !== 'object' || Array.isArray(over)) return over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = merge(base[k], v);
  return out;
};

// The field config properties applyFieldOverrides copies from defaults and overrides: the standard
// ones Grafana registers, and every custom one the panel's JSON names.
function configRegistry(fieldConfig) {
  const standard = [
    'unit', 'decimals', 'min', 'max', 'displayName', 'noValue', 'thresholds', 'mappings',
    'color', 'links', 'filterable', 'description', 'fieldMinMax',
  ];
  const custom = new Set(Object.keys(fieldConfig.defaults.custom || {}));
  for (const o of fieldConfig.overrides || []) {
    for (const p of o.properties || []) {
      if (p.id.startsWith('custom.')) custom.add(p.id.slice('custom.'.length));
    }
  }
  const item = (id, path, isCustom) => ({
    id,
    path,
    name: id,
    isCustom,
    process: (value) => value,
    shouldApply: () => true,
    override: () => null,
    editor: () => null,
  });
  return new FieldConfigOptionsRegistry(() => [
    ...standard.map((id) => item(id, id, false)),
    ...[...custom].map((path) => item(`custom.${path}`, path, true)),
  ]);
}

function fieldConfigOf(panel) {
  const defaults = merge(PANEL_DEFAULTS[panel.type] || {}, panel.fieldConfig?.defaults || {});
  if (!defaults.thresholds) defaults.thresholds = DEFAULT_THRESHOLDS;
  if (!defaults.mappings) defaults.mappings = [];
  return { defaults, overrides: panel.fieldConfig?.overrides || [] };
}

function toFrame(f) {
  const fields = f.fields.map((x) => ({
    name: x.name,
    type: x.type,
    values: x.type === FieldType.time ? x.values.map(Number) : x.values,
    labels: x.labels,
    config: x.config || {},
  }));
  return { refId: f.refId, name: f.name, meta: f.meta, fields, length: fields[0]?.values.length || 0 };
}

async function prepare(panel, frames, env) {
  let series = frames.map(toFrame);
  if (panel.transformations?.length) {
    series = await new Promise((resolve, reject) =>
      transformDataFrame(panel.transformations, series).subscribe({ next: resolve, error: reject })
    );
  }
  const fieldConfig = fieldConfigOf(panel);
  return applyFieldOverrides({
    data: series,
    fieldConfig,
    fieldConfigRegistry: configRegistry(fieldConfig),
    replaceVariables: env.replaceVariables,
    theme: env.theme,
    timeZone: env.timeZone,
  });
}

// What Grafana's time series panel does to frames before the component sees them.
function graphable(series, env) {
  const frames = [];
  cacheFieldDisplayNames(series);
  let seriesIndex = 0;
  for (const frame of series) {
    const nulled = applyNullInsertThreshold({
      frame,
      refFieldPseudoMin: env.timeRange.from.valueOf(),
      refFieldPseudoMax: env.timeRange.to.valueOf(),
    });
    const fields = nullToValue(nulled).fields.filter(
      (f) => f.type === FieldType.time || f.type === FieldType.number
    );
    if (fields.some((f) => f.type === FieldType.time) && fields.some((f) => f.type === FieldType.number)) {
      for (const f of fields) if (f.type === FieldType.number) f.state = { ...f.state, seriesIndex: seriesIndex++ };
      frames.push({ ...frame, length: nulled.length, fields });
    }
  }
  return frames;
}

function countOf(panel, series) {
  if (panel.type === 'table') return series[0]?.length || 0;
  let n = 0;
  for (const frame of series) {
    for (const f of frame.fields) {
      if (f.type === FieldType.number) n += f.values.filter((v) => v !== null && v !== undefined && !Number.isNaN(v)).length;
    }
  }
  return n;
}

// The instances a panel's data came from: a series' label, or a table's instance column.
function instancesOf(series) {
  const found = new Set();
  for (const frame of series) {
    for (const f of frame.fields) {
      if (f.labels?.instance) found.add(f.labels.instance);
      if (f.name === 'instance') f.values.forEach((v) => found.add(v));
    }
  }
  return [...found].sort();
}

function NoData() {
  return <div className="pictures-no-data" style={{ display: 'flex', height: '100%', alignItems: 'center', justifyContent: 'center' }}>No data</div>;
}

function StatPanel({ panel, series, width, height, env }) {
  const options = merge(STAT_OPTIONS, panel.options || {});
  const values = getFieldDisplayValues({
    fieldConfig: fieldConfigOf(panel),
    reduceOptions: options.reduceOptions,
    replaceVariables: env.replaceVariables,
    theme: env.theme,
    data: series,
    sparkline: options.graphMode !== 'none',
    timeZone: env.timeZone,
  });
  return (
    <VizRepeater
      getValues={() => values}
      getAlignmentFactors={getDisplayValueAlignmentFactors}
      renderValue={({ value, alignmentFactors, width: w, height: h, count }) => (
        <BigValue
          value={value.display}
          count={count}
          sparkline={value.sparkline}
          colorMode={options.colorMode}
          graphMode={options.graphMode}
          justifyMode={options.justifyMode}
          textMode={options.textMode}
          alignmentFactors={alignmentFactors}
          text={options.text}
          width={w}
          height={h}
          theme={env.theme}
        />
      )}
      width={width}
      height={height}
      source={series}
      itemSpacing={3}
      renderCounter={0}
      autoGrid={true}
      orientation={options.orientation}
    />
  );
}

function TablePanel({ panel, series, width, height, env }) {
  const options = panel.options || {};
  cacheFieldDisplayNames(series);
  return (
    <TableNG
      data={series[0]}
      width={width}
      height={height}
      noHeader={options.showHeader === false}
      showTypeIcons={options.showTypeIcons}
      resizable={true}
      initialSortBy={options.sortBy || []}
      cellHeight={options.cellHeight}
      enablePagination={options.footer?.enablePagination}
      timeRange={env.timeRange}
      fieldConfig={fieldConfigOf(panel)}
    />
  );
}

function TimeSeriesPanel({ panel, series, width, height, env }) {
  const options = merge({ legend: { showLegend: true, displayMode: 'list', placement: 'bottom', calcs: [] } }, panel.options || {});
  const frames = graphable(series, env);
  if (!frames.length) return <NoData />;
  return (
    <TimeSeries
      frames={frames}
      structureRev={1}
      timeRange={env.timeRange}
      timeZone={env.timeZone}
      width={width}
      height={height}
      legend={options.legend}
      options={options}
    >
      {() => null}
    </TimeSeries>
  );
}

const PANELS = { stat: StatPanel, table: TablePanel, timeseries: TimeSeriesPanel };

function Panel({ panel, series, error, width, height, env }) {
  const Viz = PANELS[panel.type];
  const empty = !series.length || series.every((f) => !f.length);
  return (
    <PanelChrome
      title={env.replaceVariables(panel.title)}
      description={panel.description}
      width={width}
      height={height}
      statusMessage={error || (Viz ? undefined : `Panel type ${panel.type} is not drawn here`)}
    >
      {(w, h) => (!Viz || empty ? <NoData /> : <Viz panel={panel} series={series} width={w} height={h} env={env} />)}
    </PanelChrome>
  );
}

function Dashboard({ data, prepared, width, env, onDrawn }) {
  useLayoutEffect(onDrawn);
  const cell = (width - 2 * PAGE_PADDING + GAP) / 24;
  const panels = data.dashboard.panels.filter((p) => p.type !== 'row');
  const rows = data.dashboard.panels.filter((p) => p.type === 'row');
  const bottom = Math.max(...data.dashboard.panels.map((p) => p.gridPos.y + p.gridPos.h));
  const theme = env.theme;
  return (
    <div style={{ background: theme.colors.background.canvas, padding: PAGE_PADDING, width, boxSizing: 'border-box' }}>
      <div style={{ display: 'flex', alignItems: 'center', gap: 16, height: 40, marginBottom: 8 }}>
        <Icon name="apps" size="lg" />
        <span style={{ fontSize: theme.typography.h3.fontSize, color: theme.colors.text.primary }}>{data.dashboard.title}</span>
        <span style={{ flex: 1 }} />
        {data.variables.map((v) => (
          <span key={v.name} style={{ border: `1px solid ${theme.colors.border.medium}`, padding: '4px 8px', borderRadius: 2 }}>
            <span style={{ color: theme.colors.text.secondary }}>{v.label} </span>
            {v.text}
          </span>
        ))}
        <span style={{ border: `1px solid ${theme.colors.border.medium}`, padding: '4px 8px', borderRadius: 2 }}>
          <Icon name="clock-nine" /> {data.timeRangeText}
        </span>
      </div>
      <div style={{ position: 'relative', height: bottom * (ROW + GAP) - GAP }}>
        {rows.map((r) => (
          // A row as Grafana draws one: its title, and how many panels a collapsed row hides.
          <div
            key={r.id}
            style={{
              position: 'absolute',
              left: 0,
              top: r.gridPos.y * (ROW + GAP),
              width: '100%',
              height: ROW,
              display: 'flex',
              alignItems: 'center',
              gap: 4,
              fontSize: theme.typography.h5.fontSize,
              fontWeight: theme.typography.fontWeightMedium,
              color: theme.colors.text.primary,
            }}
          >
            <Icon name={r.collapsed ? 'angle-right' : 'angle-down'} />
            {env.replaceVariables(r.title)}
            {r.collapsed && (
              <span style={{ color: theme.colors.text.secondary, fontSize: theme.typography.bodySmall.fontSize }}>
                ({(r.panels || []).length} panels)
              </span>
            )}
          </div>
        ))}
        {panels.map((p) => {
          const g = p.gridPos;
          const w = g.w * cell - GAP;
          const h = g.h * (ROW + GAP) - GAP;
          const { series, error } = prepared[p.id];
          return (
            <div key={p.id} data-panel-id={p.id} style={{ position: 'absolute', left: g.x * cell, top: g.y * (ROW + GAP), width: w, height: h }}>
              <Panel panel={p} series={series} error={error} width={w} height={h} env={env} />
            </div>
          );
        })}
      </div>
    </div>
  );
}

async function main() {
  const data = await (await fetch('data.json')).json();
  const theme = createTheme({ colors: { mode: data.theme || 'dark' } });
  const vars = Object.fromEntries(data.variables.map((v) => [v.name, v.text]));
  const env = {
    theme,
    timeZone: data.timeZone || 'browser',
    timeRange: {
      from: dateTime(data.timeRange.from),
      to: dateTime(data.timeRange.to),
      raw: data.timeRange.raw,
    },
    replaceVariables: (s) => (s || '').replace(/\$\{?(\w+)\}?/g, (m, name) => vars[name] ?? m),
  };
  const prepared = {};
  const report = [];
  for (const panel of data.dashboard.panels.filter((p) => p.type !== 'row')) {
    const answer = data.panels[String(panel.id)] || { frames: [] };
    let series = [];
    let error = answer.error;
    try {
      series = await prepare(panel, answer.frames, env);
    } catch (e) {
      error = `${e}`;
    }
    prepared[panel.id] = { series, error };
    report.push({
      id: panel.id,
      title: panel.title,
      type: panel.type,
      count: countOf(panel, series),
      instances: instancesOf(series),
      error: error || null,
    });
  }
  document.body.style.background = theme.colors.background.canvas;
  document.body.style.margin = '0';
  const root = createRoot(document.getElementById('root'));
  const onDrawn = () => {
    // Two frames later the canvases (uPlot) and measured layouts (tables) are on screen.
    requestAnimationFrame(() =>
      requestAnimationFrame(() => {
        for (const r of report) {
          const el = document.querySelector(`[data-panel-id="${r.id}"]`);
          r.noData = !!el?.querySelector('.pictures-no-data');
          r.text = el ? el.innerText.slice(0, 2000) : '';
        }
        window.__pictures = { ready: true, panels: report, height: document.body.scrollHeight };
      })
    );
  };
  root.render(
    <ThemeContext.Provider value={theme}>
      <GlobalStyles />
      <Dashboard data={data} prepared={prepared} width={data.width} env={env} onDrawn={onDrawn} />
    </ThemeContext.Provider>
  );
}

main().catch((e) => {
  window.__pictures = { ready: true, failed: `${e}\n${e.stack || ''}`, panels: [] };
});
