// A tiny element builder: the HMI's screens are made of plain DOM, no framework.

/** An element with its attributes (on* are listeners) and its children (nodes or text). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "value") element.value = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

export function append(element, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** ``element`` emptied and given ``children``. */
export function replace(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

/** A labelled form control: the label names it for screen readers and for the tests. */
export function field(label, control) {
  return h("label", { class: "field" }, h("span", {}, label), control);
}
