import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  MainAreaWidget,
  Notification,
  ToolbarButton,
  showDialog
} from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';
import { Widget } from '@lumino/widgets';

import { requestAPI } from './request';

const PLUGIN_ID = 'cml-nb:plugin';

/** GET /cml-nb/preview */
interface IReport {
  path: string;
  markdown: string;
  html: string;
}

/** GET /cml-nb/target: where "Post report" will publish. */
interface ITarget {
  forge: string;
  repository: string;
  kind: string;
  number: number | null;
  sha: string | null;
  description: string;
  /** The API root that receives the token, and its host (GET /cml-nb/target only). */
  api_url?: string;
  host?: string;
  /** Where that host came from: GITHUB_API_URL, --api-url, the user's config, ... */
  api_source?: string;
  /** Which token is sent: GITHUB_TOKEN, GITLAB_TOKEN, ... */
  token_name?: string;
}

/** POST /cml-nb/post */
interface IPosted {
  url: string;
  target: ITarget;
}

/** The settings of this plugin; empty strings defer to [tool.cml-nb]. */
interface ISettings {
  forge: string;
  target: string;
  storage: string;
  marker: string;
}

/**
 * The report's sanitized HTML in a sandboxed frame: `sandbox=""` runs no
 * scripts and gives the frame a unique origin, so the report cannot reach
 * JupyterLab or the server.
 */
class ReportView extends Widget {
  constructor() {
    super();
    this.addClass('jp-cmlnb-report');
    this._frame = document.createElement('iframe');
    this._frame.setAttribute('sandbox', '');
    this._frame.setAttribute('referrerpolicy', 'no-referrer');
    this._frame.title = 'cml-nb report';
    this.node.appendChild(this._frame);
  }

  show_(report: IReport): void {
    this._frame.srcdoc = report.html;
  }

  private _frame: HTMLIFrameElement;
}

/** Adds the two buttons to every notebook's toolbar. */
class ReportButtons
  implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel>
{
  constructor(
    private app: JupyterFrontEnd,
    private settings: () => ISettings
  ) {}

  createNew(panel: NotebookPanel): IDisposable {
    const preview = new ToolbarButton({
      className: 'jp-cmlnb-preview',
      label: 'Preview report',
      tooltip: 'Render the cml-nb report from the saved outputs (no re-run)',
      onClick: () => void this.preview(panel)
    });
    const post = new ToolbarButton({
      className: 'jp-cmlnb-post',
      label: 'Post report',
      tooltip: 'Save, then publish the cml-nb report to the pull request or commit',
      onClick: () => void this.post(panel)
    });
    panel.toolbar.insertItem(10, 'cmlNbPreview', preview);
    panel.toolbar.insertItem(11, 'cmlNbPost', post);
    // Once every extension has added its buttons (nbdime adds two), move ours right
    // after the cell-type menu: a narrowed toolbar folds its last items into "...".
    void panel.context.ready.then(() => {
      const names = Array.from(panel.toolbar.names());
      const after = names.indexOf('cellType');
      if (after >= 0 && names.indexOf('cmlNbPreview') > after + 1) {
        panel.toolbar.insertAfter('cellType', 'cmlNbPreview', preview);
        panel.toolbar.insertAfter('cmlNbPreview', 'cmlNbPost', post);
      }
    });
    return new DisposableDelegate(() => {
      preview.dispose();
      post.dispose();
    });
  }

  /** Build the report and show it beside the notebook (refreshing an open one). */
  async preview(panel: NotebookPanel): Promise<void> {
    const path = panel.context.path;
    const query = new URLSearchParams({ path });
    let report: IReport;
    try {
      report = await requestAPI<IReport>(
        `preview?${query.toString()}`,
        this.app.serviceManager.serverSettings
      );
    } catch (error) {
      Notification.error(`cml-nb preview failed: ${(error as Error).message}`, {
        autoClose: false
      });
      return;
    }
    let widget = this._previews.get(path);
    if (!widget || widget.isDisposed) {
      widget = new MainAreaWidget<ReportView>({ content: new ReportView() });
      widget.id = `cml-nb-report-${Private.nextId()}`;
      widget.title.closable = true;
      widget.addClass('jp-cmlnb-report-panel');
      this._previews.set(path, widget);
      this.app.shell.add(widget, 'main', { mode: 'split-right', ref: panel.id });
    }
    widget.title.label = `Report: ${PathName.basename(path)}`;
    widget.content.show_(report);
    this.app.shell.activateById(widget.id);
  }

  /** Save, show where the report goes, confirm, publish, and link the comment. */
  async post(panel: NotebookPanel): Promise<void> {
    const serverSettings = this.app.serviceManager.serverSettings;
    const path = panel.context.path;
    const settings = this.settings();
    try {
      await panel.context.save();
      const query = new URLSearchParams({ path });
      for (const [key, value] of Object.entries(settings)) {
        if (value) {
          query.set(key, value);
        }
      }
      const target = await requestAPI<ITarget>(
        `target?${query.toString()}`,
        serverSettings
      );
      const answer = await showDialog({
        title: 'Post report',
        body: Private.confirmation(path, target),
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Post' })]
      });
      if (!answer.button.accept) {
        return;
      }
      const posted = await requestAPI<IPosted>('post', serverSettings, {
        method: 'POST',
        body: JSON.stringify({ path, ...settings })
      });
      Notification.success(`cml-nb report posted: ${posted.url}`, {
        autoClose: false,
        actions: [
          {
            label: 'Open comment',
            callback: () => window.open(posted.url, '_blank', 'noopener')
          }
        ]
      });
    } catch (error) {
      Notification.error(`cml-nb post failed: ${(error as Error).message}`, {
        autoClose: false
      });
    }
  }

  private _previews = new Map<string, MainAreaWidget<ReportView>>();
}

namespace PathName {
  export function basename(path: string): string {
    return path.split('/').pop() || path;
  }
}

namespace Private {
  let id = 0;
  export function nextId(): number {
    return ++id;
  }

  /**
   * The dialog's text: where the report goes and which host receives the token,
   * so a developer sees the host before anything is posted with it.
   */
  export function confirmation(path: string, target: ITarget): Widget {
    const body = new Widget();
    const question = document.createElement('p');
    question.textContent = `Post the report of ${path} to ${target.description}?`;
    const host = document.createElement('p');
    host.className = 'jp-cmlnb-token-host';
    const token = target.token_name || 'Your token';
    const source = target.api_source ? ` (from ${target.api_source})` : '';
    host.textContent =
      `${token} is sent to ${target.host || target.api_url || 'the forge'}` +
      `${source}.`;
    body.node.append(question, host);
    return body;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Preview and post cml-nb reports from the notebook toolbar.',
  autoStart: true,
  optional: [ISettingRegistry],
  activate: (app: JupyterFrontEnd, registry: ISettingRegistry | null) => {
    let current: ISettings = { forge: '', target: '', storage: '', marker: '' };
    if (registry) {
      registry
        .load(PLUGIN_ID)
        .then(loaded => {
          const read = () => {
            current = { ...current, ...(loaded.composite as Partial<ISettings>) };
          };
          read();
          loaded.changed.connect(read);
        })
        .catch(reason => console.error('cml-nb: cannot load settings', reason));
    }
    app.docRegistry.addWidgetExtension(
      'Notebook',
      new ReportButtons(app, () => current)
    );
  }
};

export default plugin;
