// Parameter forms built from the OpenAPI document: each method's body is a choice of one
// schema per pipeline kind, and the model's ``sample_parameters`` say which one is its own.

const ROUTES = {
  sample: "/v1/models/{model}/sample",
  text_to_image: "/v1/models/{model}/text-to-image",
  interpolate: "/v1/models/{model}/interpolate",
};
// Fields a method adds to the model's sample parameters (not a sign of another kind).
const OWN_FIELDS = {
  sample: [],
  text_to_image: ["prompt", "negative_prompt", "image", "strength", "mask"],
  interpolate: ["seed_a", "seed_b", "frames", "image_a", "image_b"],
};
const SEEDS = new Set(["seed", "seed_a", "seed_b", "mix_seed"]);

/** The body schema of ``method`` for ``model``: the alternative that shares the most of the
 * model's sample parameters and has the fewest it lacks. */
export function methodSchema(doc, method, model) {
  const operation = doc.paths?.[ROUTES[method]]?.post;
  const schema = operation?.requestBody?.content?.["application/json"]?.schema;
  if (!schema) return null;
  const options = schema.anyOf || [schema];
  const known = new Set([...model.sample_parameters, ...OWN_FIELDS[method]]);
  const score = (option) => {
    const names = Object.keys(option.properties || {});
    const shared = names.filter((n) => known.has(n)).length;
    return shared - 2 * (names.length - shared);
  };
  return options.reduce((best, option) => (score(option) > score(best) ? option : best));
}

/** A property's own type and bounds, looking through ``anyOf: [T, null]``. */
function describe(property) {
  const variants = property.anyOf || [property];
  const typed = variants.find((v) => v.type && v.type !== "null") || {};
  return {
    type: typed.type || "string",
    format: typed.format,
    minimum: typed.minimum,
    maximum: typed.maximum,
    nullable: variants.some((v) => v.type === "null"),
  };
}

// "ddpm, ddim, dpmpp_2m or euler_a" -> the choices, for a datalist.
function choices(description) {
  const match = /^([a-z0-9_]+(?:, [a-z0-9_]+)*) or ([a-z0-9_]+)$/.exec(description || "");
  return match ? [...match[1].split(", "), match[2]] : null;
}

function label(name) {
  return name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

/**
 * Fill ``container`` with one labelled input per property (binary fields, which are images,
 * are left to the caller); ``initial`` pre-fills some. Returns name -> field.
 */
export function buildFields(container, schema, { max = {}, initial = {}, order = [] } = {}) {
  container.replaceChildren();
  const fields = new Map();
  const properties = schema.properties || {};
  const required = new Set(schema.required || []);
  const names = Object.keys(properties).sort(
    (a, b) => rank(order, a) - rank(order, b),
  );
  for (const name of names) {
    const info = describe(properties[name]);
    if (info.format === "binary") continue;
    const id = `${container.closest("form").id}-${name}`;
    const wrap = document.createElement("div");
    wrap.className = "field";
    wrap.dataset.field = name;
    const text = document.createElement("label");
    text.htmlFor = id;
    text.textContent = label(name);
    const input = document.createElement("input");
    input.id = id;
    input.name = name;
    if (SEEDS.has(name) || info.type === "integer") {
      // Seeds run to 2**64 - 1, past what a number input holds exactly.
      input.type = SEEDS.has(name) ? "text" : "number";
      input.inputMode = "numeric";
      if (!SEEDS.has(name)) input.step = "1";
    } else if (info.type === "number") {
      input.type = "number";
      input.step = "any";
      input.inputMode = "decimal";
    } else {
      input.type = "text";
      const options = choices(properties[name].description);
      if (options) {
        const list = document.createElement("datalist");
        list.id = `${id}-choices`;
        list.replaceChildren(...options.map((o) => new Option(o)));
        input.setAttribute("list", list.id);
        wrap.append(list);
      }
    }
    const minimum = info.minimum;
    const maximum = max[name] ?? info.maximum;
    if (input.type === "number") {
      if (minimum !== undefined) input.min = String(minimum);
      if (maximum !== undefined) input.max = String(maximum);
    }
    if (required.has(name)) input.required = true;
    const fallback = properties[name].default;
    input.placeholder = fallback !== undefined && fallback !== null ? String(fallback) : "";
    if (initial[name] !== undefined) input.value = String(initial[name]);
    const hint = document.createElement("small");
    hint.id = `${id}-hint`;
    hint.textContent = bounds(properties[name].description, minimum, maximum);
    const error = document.createElement("p");
    error.id = `${id}-error`;
    error.className = "error";
    error.setAttribute("role", "alert");
    error.hidden = true;
    input.setAttribute("aria-describedby", `${hint.id} ${error.id}`);
    wrap.prepend(text, input, hint, error);
    container.append(wrap);
    fields.set(name, { input, info, wrap });
  }
  return fields;
}

function rank(order, name) {
  const i = order.indexOf(name);
  return i < 0 ? order.length : i;
}

function bounds(description, minimum, maximum) {
  const parts = [description || ""];
  if (minimum !== undefined && maximum !== undefined && maximum < 2 ** 53) {
    parts.push(`(${minimum} to ${maximum})`);
  } else if (minimum !== undefined && minimum !== 0) {
    parts.push(`(at least ${minimum})`);
  }
  return parts.join(" ").trim();
}

/** The filled-in fields as request parameters (blank ones left to the server), or throws
 * a FieldError naming the first field that cannot be read. */
export function readFields(fields) {
  const params = {};
  for (const [name, { input, info }] of fields) {
    const raw = input.value.trim();
    if (input.validity.badInput) throw new FieldError(name, "not a number");
    if (raw === "") {
      if (input.required) throw new FieldError(name, "required");
      continue;
    }
    if (SEEDS.has(name)) {
      if (!/^\d+$/.test(raw)) throw new FieldError(name, "a whole number of at least 0");
      params[name] = BigInt(raw);
    } else if (info.type === "integer") {
      params[name] = Number.parseInt(raw, 10);
    } else if (info.type === "number") {
      params[name] = Number.parseFloat(raw);
    } else {
      params[name] = input.value;
    }
  }
  return params;
}

export class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** The form field a server error names: ``params.steps`` -> steps, ``images[0]`` -> images. */
function fieldName(field) {
  return (field || "").replace(/^params\./, "").split(/[.[]/)[0];
}

/** Show ``message`` beside the field it names (or under the form), and focus that field. */
export function showError(form, field, message) {
  const name = fieldName(field);
  const wrap = name ? form.querySelector(`[data-field="${CSS.escape(name)}"]`) : null;
  const target = wrap ? wrap.querySelector(".error") : form.querySelector(".form-error");
  target.textContent = wrap || !field ? message : `${field}: ${message}`;
  target.hidden = false;
  const input = wrap && wrap.querySelector("input, select, textarea, button");
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
}

export function clearErrors(form) {
  for (const error of form.querySelectorAll(".error")) {
    error.hidden = true;
    error.textContent = "";
  }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}
