// Puts the results of one bench/cm.mjs run into bench/README.md (between the two "latest run"
// markers) and its chart into bench/cm.svg:
//
//   node bench/lib/readme.mjs build-bench/out/cm-STAMP.json     (cm.mjs --readme does the same)
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const README = path.join(HERE, '..', 'README.md');
const SVG = path.join(HERE, '..', 'cm.svg');
const BEGIN = '<!-- latest cm.mjs run: begin (written by bench/lib/readme.mjs) -->';
const END = '<!-- latest cm.mjs run: end -->';

/** Replaces the latest-run section of bench/README.md with the run in `jsonFile`. */
export async function updateReadme(jsonFile, mdFile, svgFile) {
  const result = JSON.parse(await readFile(jsonFile, 'utf8'));
  const base = jsonFile.replace(/\.json$/, '');
  const md = await readFile(mdFile ?? `${base}.md`, 'utf8');
  const svg = await readFile(svgFile ?? `${base}.svg`, 'utf8');
  const args = process.argv.includes('--args') ? process.argv[process.argv.indexOf('--args') + 1] : null;
  const section = [
    BEGIN,
    '',
    `Run of ${result.when.slice(0, 16).replace('T', ' ')} UTC${result.commit ? ` at commit ${result.commit}` : ''}, `
      + `${(result.seconds / 60).toFixed(0)} minutes: \`bash bench/run.sh${args ?? (result.argv?.length ? ` ${result.argv.join(' ')}` : '')}\``,
    '',
    md.trimEnd(),
    '',
    '![xmppgw beside its peers](cm.svg)',
    '',
    END,
  ].join('\n');
  const text = await readFile(README, 'utf8');
  const i = text.indexOf(BEGIN);
  const j = text.indexOf(END);
  if (i < 0 || j < i) throw new Error(`${README}: no "${BEGIN}" ... "${END}" section`);
  await writeFile(README, `${text.slice(0, i)}${section}${text.slice(j + END.length)}`);
  await writeFile(SVG, svg);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node bench/lib/readme.mjs build-bench/out/cm-STAMP.json [--args "OPTIONS"]');
    process.exit(2);
  }
  updateReadme(file).then(() => console.log(`updated ${README} and ${SVG}`), (err) => {
    console.error(err.stack ?? err);
    process.exit(1);
  });
}
