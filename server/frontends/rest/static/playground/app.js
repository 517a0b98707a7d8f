// The playground page: pick a model, fill a form built from the API's own description,
// follow a job's events (queue, progress, previews) with a Cancel button, and show results.
import { ApiError, call, getToken, jobEvents, openapi, setToken } from "./api.js";
import { FieldError, buildFields, clearErrors, methodSchema, readFields, showError } from "./form.js";
import { imageDrop, renderGrid, renderPreview, toModelPng } from "./images.js";

const $ = (selector) => document.querySelector(selector);
const FIELD_ORDER = [
  "prompt", "negative_prompt", "n", "seed", "seed_a", "seed_b", "frames", "steps", "sampler",
  "guidance_scale", "class_label", "temperature", "truncation", "mix_seed", "mix_layer", "eta",
  "preview_every", "strength",
];

const state = { doc: null, models: [], model: null, forms: {} };

function ref(model) {
  return `${model.name}@${model.version}`;
}

function modelPath(model, method) {
  return `/v1/models/${encodeURIComponent(ref(model))}/${method}`;
}

// --- token and model list -------------------------------------------------------------

function tokenError(message) {
  const error = $("#token-error");
  error.textContent = message;
  error.hidden = !message;
  $("#token").toggleAttribute("aria-invalid", Boolean(message));
}

async function loadModels() {
  tokenError("");
  $("#model-error").hidden = true;
  try {
    state.doc = state.doc || (await openapi());
    state.models = (await call("GET", "/v1/models")).models;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      tokenError(`${error.message} — enter a token above.`);
      $("#token").focus();
    } else {
      $("#model-error").textContent = `Cannot list models: ${error.message}`;
      $("#model-error").hidden = false;
    }
    return;
  }
  const select = $("#model");
  const previous = select.value;
  select.replaceChildren(
    ...state.models.map((m) => new Option(`${ref(m)} · ${m.family}`, ref(m))),
  );
  if (state.models.some((m) => ref(m) === previous)) select.value = previous;
  if (!state.models.length) {
    $("#model-info").textContent = "This server serves no model yet.";
    return;
  }
  chooseModel();
}

// --- forms ------------------------------------------------------------------------------

function modesOf(model) {
  const can = new Set(model.capabilities);
  return {
    generate: can.has("sample") || can.has("text_to_image"),
    interpolate: can.has("interpolate"),
    image: can.has("encode") || can.has("reconstruct") || can.has("log_prob"),
  };
}

function chooseModel() {
  const model = state.models.find((m) => ref(m) === $("#model").value);
  state.model = model;
  const { height, width, channels } = model.image;
  $("#model-info").textContent =
    `${model.family} (${model.pipeline}) · ${width}×${height}×${channels} · ` +
    `can ${model.capabilities.join(", ").replace(/_/g, "-")}` +
    (model.likelihood ? ` · likelihood: ${model.likelihood}` : "");
  const modes = modesOf(model);
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.closest("label").hidden = !modes[radio.value];
  }
  buildGenerate(model);
  buildInterpolate(model);
  buildImage(model);
  const checked = document.querySelector("input[name=mode]:checked");
  const mode = checked && modes[checked.value] ? checked.value : Object.keys(modes).find((m) => modes[m]);
  document.querySelector(`input[name=mode][value=${mode}]`).checked = true;
  showMode();
}

function showMode() {
  const mode = document.querySelector("input[name=mode]:checked")?.value;
  for (const form of document.querySelectorAll("form.params")) form.hidden = form.dataset.mode !== mode;
}

function generateMethod(model) {
  return model.capabilities.includes("text_to_image") ? "text_to_image" : "sample";
}

function buildGenerate(model) {
  const form = $("#generate-form");
  const method = generateMethod(model);
  const schema = methodSchema(state.doc, method, model);
  const properties = schema.properties || {};
  const initial = { n: Math.min(4, model.max_n) };
  if ("preview_every" in properties) initial.preview_every = 5;
  state.forms.generate = {
    method,
    fields: buildFields(form.querySelector("[data-fields]"), schema, {
      max: { n: model.max_n },
      initial,
      order: FIELD_ORDER,
    }),
  };
  const img2img = $("#img2img");
  img2img.querySelector(".dropzone")?.remove();
  img2img.hidden = !("image" in properties);
  state.forms.generate.image = img2img.hidden
    ? null
    : imageDrop(img2img, { id: "generate-form-image", labelText: "Start image" });
  form.querySelector("button[type=submit]").textContent =
    method === "text_to_image" ? "Generate from prompt" : "Sample";
}

function buildInterpolate(model) {
  if (!modesOf(model).interpolate) return;
  const schema = methodSchema(state.doc, "interpolate", model);
  state.forms.interpolate = {
    fields: buildFields($("#interpolate-form [data-fields]"), schema, {
      initial: { frames: 8 },
      order: FIELD_ORDER,
    }),
  };
}

function buildImage(model) {
  const wrap = $("#image-drop");
  wrap.replaceChildren();
  state.forms.image = imageDrop(wrap, { id: "image-form-images", labelText: "Image" });
  const can = new Set(model.capabilities);
  for (const button of document.querySelectorAll("#image-form button[name=action]")) {
    button.hidden = !can.has(button.value);
  }
}

// --- running ----------------------------------------------------------------------------

function busy(form, running) {
  for (const button of form.querySelectorAll("button[type=submit]")) button.disabled = running;
  form.setAttribute("aria-busy", String(running));
}

function fail(form, error) {
  if (error instanceof FieldError || (error instanceof ApiError && error.field)) {
    showError(form, error.field, error.message);
  } else {
    showError(form, null, error.message);
  }
  if (error instanceof ApiError && error.status === 401) {
    tokenError(`${error.message} — enter a token above.`);
  }
}

async function run(form, work) {
  clearErrors(form);
  busy(form, true);
  try {
    await work();
  } catch (error) {
    fail(form, error);
  } finally {
    busy(form, false);
  }
}

function jobStatus(text, jobState) {
  $("#job-status").textContent = text;
  if (jobState) $("#job").dataset.state = jobState;
}

async function generate(form) {
  const model = state.model;
  const { method, fields, image } = state.forms.generate;
  const params = readFields(fields);
  const file = image?.current();
  if (file) params.image = await toModelPng(file, model.image);
  const job = await call("POST", "/v1/jobs", { model: ref(model), method, params });
  await follow(form, model, job, params);
}

/** Follow a job's events until it ends: queue position, progress, previews, then the
 * images (or the error, beside the field it names). */
async function follow(form, model, job, params) {
  const panel = $("#job");
  const progress = $("#job-progress");
  const cancel = $("#cancel");
  panel.hidden = false;
  panel.dataset.jobId = job.job_id;
  progress.max = Math.max(job.steps, 1);
  progress.value = 0;
  $("#preview").hidden = true;
  jobStatus(job.position != null ? `queued, position ${job.position}` : job.state, job.state);
  cancel.hidden = false;
  cancel.disabled = false;
  // On a phone the results panel is below the form: bring the job into view.
  if (matchMedia("(max-width: 720px)").matches) panel.scrollIntoView({ block: "start" });
  cancel.onclick = async () => {
    cancel.disabled = true;
    jobStatus("cancelling…");
    try {
      await call("DELETE", `/v1/jobs/${encodeURIComponent(job.job_id)}`);
    } catch (error) {
      jobStatus(`cancel failed: ${error.message}`);
      cancel.disabled = false;
    }
  };
  const showResult = (images, seed) => {
    progress.value = progress.max;
    $("#preview").hidden = true;
    const prompt = params.prompt ? ` · “${params.prompt}”` : "";
    renderGrid($("#results"), images, {
      title: `${ref(model)} · seed ${seed}${prompt}`,
      stem: `${model.name}-seed${seed}`,
    }).dataset.seed = String(seed);
    jobStatus(`done: ${images.length} image(s), seed ${seed}`, "done");
  };
  const showFailure = (error) => {
    const cancelled = error.code === "cancelled";
    jobStatus(cancelled ? "cancelled" : `failed: ${error.message}`, cancelled ? "cancelled" : "failed");
    if (!cancelled) showError(form, error.field, error.message);
  };
  let ended = false;
  try {
    for await (const { event, data } of jobEvents(job.job_id)) {
      if (event === "queued") {
        jobStatus(`queued, position ${data.position}`, "queued");
      } else if (event === "progress") {
        progress.max = Math.max(data.steps, 1);
        progress.value = data.step;
        jobStatus(`running, step ${data.step} of ${data.steps}`, "running");
      } else if (event === "preview") {
        renderPreview($("#preview"), data.images, data.step);
        $("#preview").dataset.step = data.step;
      } else if (event === "result") {
        showResult(data.images, data.seed ?? params.seed);
        ended = true;
        break;
      } else if (event === "error") {
        showFailure(data);
        ended = true;
        break;
      }
    }
    if (!ended) {
      // The stream closed early (a proxy, a dropped connection): ask for the job's state.
      const info = await call("GET", `/v1/jobs/${encodeURIComponent(job.job_id)}`);
      if (info.state === "done") showResult(info.images, info.seed);
      else if (info.error) showFailure(info.error);
      else jobStatus(`the event stream ended while the job was ${info.state}`, info.state);
    }
  } finally {
    cancel.hidden = true;
  }
}

async function interpolate() {
  const model = state.model;
  const params = readFields(state.forms.interpolate.fields);
  const answer = await call("POST", modelPath(model, "interpolate"), params);
  const seeds = `seeds ${answer.seed_a} → ${answer.seed_b}`;
  renderGrid($("#results"), answer.images, {
    title: `${ref(model)} · ${seeds} · ${answer.images.length} frames`,
    stem: `${model.name}-seeds${answer.seed_a}-${answer.seed_b}`,
    captions: answer.images.map((_, i) => `frame ${i}`),
    strip: true,
  });
}

function textResult(title, lines) {
  const section = document.createElement("section");
  section.className = "result";
  const heading = document.createElement("h3");
  heading.textContent = title;
  const body = document.createElement("pre");
  body.textContent = lines.join("\n");
  section.append(heading, body);
  $("#results").prepend(section);
  return section;
}

function shape(array) {
  const dims = [];
  for (let a = array; Array.isArray(a); a = a[0]) dims.push(a.length);
  return dims;
}

async function imageAction(action) {
  const model = state.model;
  const file = state.forms.image.current();
  if (!file) throw new FieldError("images", "choose or drop an image first");
  const png = await toModelPng(file, model.image);
  if (action === "reconstruct") {
    const answer = await call("POST", modelPath(model, "reconstruct"), { images: [png] });
    renderGrid($("#results"), [png, ...answer.images], {
      title: `${ref(model)} · reconstruction`,
      stem: `${model.name}-reconstruction`,
      captions: ["input", "reconstruction"],
    }).classList.add("reconstruction");
  } else if (action === "encode") {
    const answer = await call("POST", modelPath(model, "encode"), { images: [png] });
    const lines = Object.entries(answer.groups).map(([name, arrays]) => {
      const values = arrays[0].flat(Infinity);
      const head = values.slice(0, 12).map((v) => v.toFixed(3)).join(", ");
      return `${name}: shape [${shape(arrays[0]).join(", ")}]  ${head}${values.length > 12 ? ", …" : ""}`;
    });
    textResult(`${ref(model)} · latents`, lines).classList.add("latents");
  } else if (action === "log_prob") {
    const answer = await call("POST", modelPath(model, "log-prob"), { images: [png] });
    const bits = answer.bits_per_dim[0];
    textResult(`${ref(model)} · log-prob`, [
      `${bits.toFixed(4)} bits/dim (${answer.bound.replace(/_/g, " ")}, ${answer.samples} sample(s))`,
    ]).classList.add("log-prob");
  }
}

// --- wiring -----------------------------------------------------------------------------

function start() {
  $("#token").value = getToken();
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("#token").value.trim());
    loadModels();
  });
  $("#model").addEventListener("change", chooseModel);
  $("#modes").addEventListener("change", showMode);
  $("#generate-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(event.target, () => generate(event.target));
  });
  $("#interpolate-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(event.target, interpolate);
  });
  $("#image-form").addEventListener("submit", (event) => {
    event.preventDefault();
    // Enter submits with the first button, which may be one this model cannot use.
    const visible = [...event.target.querySelectorAll("button[name=action]")].filter((b) => !b.hidden);
    const action = event.submitter && !event.submitter.hidden ? event.submitter.value : visible[0]?.value;
    run(event.target, () => imageAction(action));
  });
  loadModels();
}

start();
