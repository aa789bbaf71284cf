"""The run report's stylesheet, inlined into every report (system fonts only: nothing is fetched)."""

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; --ok: #1a7f37; --bad: #cf222e;
        --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 60px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header .sub { margin: 0; color: var(--muted); }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 12px 0 6px; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
            font-size: 12.5px; }
.note { color: var(--muted); margin: 4px 0 10px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: var(--bg); }
.card .k { color: var(--muted); font-size: 12px; }
.card .v { font-size: 17px; font-weight: 600; margin-top: 2px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 5px 10px; text-align: left; vertical-align: top; }
thead th { background: var(--bg); }
table.ba td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
table.ba tbody tr:first-child td { font-weight: 600; font-size: 15px; }
td.up { color: var(--ok); } td.down { color: var(--bad); } td.same { color: var(--muted); }
.count { color: var(--muted); font-weight: 400; font-size: 12px; }
table.kv th { background: var(--bg); font-weight: 500; width: 300px; }
table.cm td { text-align: right; min-width: 56px; } table.cm td.diag { background: #dafbe1; font-weight: 600; }
table.config { width: 100%; } table.config td:first-child { width: 40%; }
table.config tr.changed td { background: #fff8c5; font-weight: 600; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 12px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 6px; }
figure img { width: 100%; height: auto; display: block; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.sample { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; margin: 10px 0; }
.sample .q { font-weight: 600; } .sample .n { color: var(--muted); font-weight: 400; margin-right: 4px; }
.sample .ref { color: var(--muted); margin: 2px 0 8px; }
.out { border-radius: 6px; padding: 6px 10px; background: var(--bg); border-left: 4px solid var(--line); }
.out.ok { border-left-color: var(--ok); } .out.bad { border-left-color: var(--bad); }
.out .who { font-size: 12px; color: var(--muted); }
.out .tag { font-weight: 600; } .out.ok .tag { color: var(--ok); } .out.bad .tag { color: var(--bad); }
.out pre { white-space: pre-wrap; word-break: break-word; margin: 4px 0 2px; }
ul.notes { color: var(--muted); margin: 4px 0; padding-left: 20px; }
"""
