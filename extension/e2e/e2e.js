// End-to-end check of the cml-nb JupyterLab extension in headless Chromium.
//
// Drives a running JupyterLab (started by tests/test_lab_e2e.py): opens the
// notebook, clicks "Post report" (confirms the dialog, waits for the link),
// then "Preview report" twice (the panel must refresh, not multiply), and
// checks the report renders inside a sandboxed frame. Prints one JSON line
// with what it saw; exits non-zero on any failure, after a screenshot.
//
// Environment: CMLNB_URL, CMLNB_TOKEN, CMLNB_NOTEBOOK, CMLNB_HEADING (text of
// the report's notebook heading), CMLNB_ARTIFACTS (screenshots), CMLNB_STEPS
// ("post,preview" by default), CHROMIUM (default /usr/bin/chromium).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const env = name => {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
};

const base = env('CMLNB_URL');
const token = env('CMLNB_TOKEN');
const notebook = env('CMLNB_NOTEBOOK');
const heading = env('CMLNB_HEADING');
const artifacts = env('CMLNB_ARTIFACTS');
const steps = (process.env.CMLNB_STEPS || 'post,preview').split(',');
const TIMEOUT = 60000;

async function dismissDialogs(page) {
  // A stray "Select Kernel" or similar modal would swallow every click.
  const dialog = page.locator('.jp-Dialog');
  if (await dialog.count()) {
    await page.locator('.jp-Dialog .jp-mod-accept').first().click();
    await dialog.first().waitFor({ state: 'detached', timeout: TIMEOUT });
  }
}

async function post(page, seen) {
  await page.locator('.jp-NotebookPanel-toolbar .jp-cmlnb-post').click();
  const dialog = page.locator('.jp-Dialog');
  await dialog.waitFor({ timeout: TIMEOUT });
  seen.confirm = (await dialog.innerText()).replace(/\s+/g, ' ').trim();
  await page.screenshot({ path: path.join(artifacts, 'post-confirm.png') });
  await page.locator('.jp-Dialog .jp-mod-accept').click();
  const toast = page.locator('.Toastify__toast', { hasText: 'cml-nb report posted' });
  await toast.waitFor({ timeout: TIMEOUT });
  const text = (await toast.innerText()).replace(/\s+/g, ' ');
  const match = text.match(/posted: (\S+)/);
  seen.posted = match ? match[1] : text;
  await page.screenshot({ path: path.join(artifacts, 'posted.png') });
}

async function preview(page, seen) {
  const button = page.locator('.jp-NotebookPanel-toolbar .jp-cmlnb-preview');
  await button.click();
  const frame = page.frameLocator('.jp-cmlnb-report iframe');
  await frame.getByText(heading).first().waitFor({ timeout: TIMEOUT });
  seen.sandbox = await page.locator('.jp-cmlnb-report iframe').getAttribute('sandbox');
  seen.reportText = (await frame.locator('body').innerText()).slice(0, 4000);
  seen.images = await frame.locator('img').count();
  // Pressed again, the same panel refreshes.
  await button.click();
  await frame.getByText(heading).first().waitFor({ timeout: TIMEOUT });
  await page.waitForTimeout(500);
  seen.panels = await page.locator('.jp-cmlnb-report').count();
  // The screenshot doubles as the README's picture: no toast over the report.
  for (const close of await page.locator('.jp-Notification-Toast-Close').all()) {
    await close.click().catch(() => {});
  }
  await page.waitForTimeout(800);
  await page.screenshot({ path: path.join(artifacts, 'preview-panel.png') });
}

(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'cmlnb-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 850 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'
    ]
  });
  const page = context.pages()[0] || (await context.newPage());
  const seen = { consoleErrors: [] };
  page.on('console', msg => {
    if (msg.type() === 'error') {
      seen.consoleErrors.push(msg.text().slice(0, 300));
    }
  });
  let failed = null;
  try {
    const url = `${base}/lab/tree/${encodeURI(notebook)}?token=${encodeURIComponent(token)}`;
    await page.goto(url, { timeout: TIMEOUT });
    await page
      .locator('.jp-NotebookPanel-toolbar .jp-cmlnb-preview')
      .waitFor({ timeout: TIMEOUT });
    await page.waitForTimeout(1000);
    await dismissDialogs(page);
    // Post first: once the report opens beside the notebook, the narrower
    // toolbar may fold "Post report" into its overflow menu.
    if (steps.includes('post')) {
      await post(page, seen);
    }
    if (steps.includes('preview')) {
      await preview(page, seen);
    }
  } catch (error) {
    failed = error;
    await page.screenshot({ path: path.join(artifacts, 'failure.png') }).catch(() => {});
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(seen));
  if (failed) {
    console.error(`e2e failed: ${failed.message}`);
    process.exit(1);
  }
})();
