import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * Call the cml-nb server extension under `<base_url>/cml-nb/`.
 *
 * ServerConnection adds the token and XSRF headers. A failed call rejects
 * with an Error carrying the server's one-line message.
 */
export async function requestAPI<T>(
  endPoint: string,
  serverSettings: ServerConnection.ISettings,
  init: RequestInit = {}
): Promise<T> {
  const url = URLExt.join(serverSettings.baseUrl, 'cml-nb', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, serverSettings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text.length > 0 ? JSON.parse(text) : {};
  } catch {
    // Jupyter's HTML error page: the route does not exist, so the extension is off.
    data = null;
  }
  if (data === null) {
    throw new Error(
      `the cml-nb server extension did not answer (HTTP ${response.status}): ` +
        "run 'jupyter server extension enable cml_nb' and restart Jupyter"
    );
  }
  if (!response.ok) {
    throw new Error(
      data.message || `the cml-nb server extension answered HTTP ${response.status}`
    );
  }
  return data as T;
}
