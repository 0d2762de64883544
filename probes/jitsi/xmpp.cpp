#include "probes/jitsi/xmpp.h"

#include <expat.h>

#include <memory>
#include <optional>
#include <utility>

#include "agent/core/handles.h"

namespace pes::jitsi {
namespace {

constexpr char kNsSep =
    ' ';  // expat joins "namespace-uri local-name" with this; URIs have no spaces
constexpr std::string_view kNsXml = "http://www.w3.org/XML/1998/namespace";
constexpr size_t kMaxElements = 10'000;

// A minimal element tree: the answers we read are tiny, and a tree keeps the interpretation
// code (what is a BOSH body, what is a features frame) separate from expat's callbacks.
struct Element {
  std::string ns, name;
  std::vector<std::pair<std::string, std::string>> attrs;  // key "ns local" or "local"
  std::string text;
  std::vector<std::unique_ptr<Element>> children;

  const std::string* attr(std::string_view key) const {
    for (const auto& [k, v] : attrs)
      if (k == key) return &v;
    return nullptr;
  }
  std::string attr_or_empty(std::string_view key) const {
    const std::string* v = attr(key);
    return v ? *v : std::string();
  }
  bool is(std::string_view want_ns, std::string_view want_name) const {
    return ns == want_ns && name == want_name;
  }
  const Element* child(std::string_view want_ns, std::string_view want_name) const {
    for (const auto& c : children)
      if (c->is(want_ns, want_name)) return c.get();
    return nullptr;
  }
  std::string qualified() const { return "{" + ns + "}" + name; }
};

void split_name(const XML_Char* raw, std::string& ns, std::string& local) {
  const std::string_view s(raw);
  const size_t sep = s.find(kNsSep);
  if (sep == std::string_view::npos) {
    ns.clear();
    local.assign(s);
  } else {
    ns.assign(s.substr(0, sep));
    local.assign(s.substr(sep + 1));
  }
}

using XmlParserPtr = Owned<XML_ParserStruct, XML_ParserFree>;

class TreeBuilder {
 public:
  // Parses the whole of `xml` as one document; returns the root or sets `error`.
  std::unique_ptr<Element> parse(std::string_view xml, std::string& error) {
    if (xml.size() > kMaxXmppInputBytes) {
      error = "input of " + std::to_string(xml.size()) + " bytes exceeds the " +
              std::to_string(kMaxXmppInputBytes) + "-byte limit";
      return nullptr;
    }
    XmlParserPtr parser(XML_ParserCreateNS(nullptr, kNsSep));
    if (!parser) {
      error = "cannot create an XML parser";
      return nullptr;
    }
    parser_ = parser.get();
    XML_SetUserData(parser_, this);
    XML_SetElementHandler(parser_, &TreeBuilder::on_start, &TreeBuilder::on_end);
    XML_SetCharacterDataHandler(parser_, &TreeBuilder::on_text);
    // No DTD at all: without one no entity can be declared, so nothing can expand.
    XML_SetStartDoctypeDeclHandler(parser_, &TreeBuilder::on_doctype);
    XML_SetEntityDeclHandler(parser_, &TreeBuilder::on_entity_decl);
    XML_SetParamEntityParsing(parser_, XML_PARAM_ENTITY_PARSING_NEVER);
    // expat >= 2.4 also limits entity amplification by default (its setter needs XML_DTD in the
    // header, which Debian's expat.h leaves undefined); with DOCTYPEs refused it never applies.

    const XML_Status status =
        XML_Parse(parser_, xml.data(), static_cast<int>(xml.size()), XML_TRUE);
    const auto line = XML_GetCurrentLineNumber(parser_);
    const auto column = XML_GetCurrentColumnNumber(parser_);
    const std::string where = "line " + std::to_string(line) + ", column " + std::to_string(column);
    if (stop_reason_) {
      error = *stop_reason_ + " (at " + where + ")";
      return nullptr;
    }
    if (status != XML_STATUS_OK) {
      const XML_Error code = XML_GetErrorCode(parser_);
      const XML_LChar* text = XML_ErrorString(code);
      error = "malformed XML at " + where + ": " + (text ? text : "unknown error");
      return nullptr;
    }
    if (!root_) {  // expat reports "no element found" itself; kept as a guard
      error = "no XML element";
      return nullptr;
    }
    return std::move(root_);
  }

 private:
  void stop(std::string reason) {
    if (!stop_reason_) stop_reason_ = std::move(reason);
    XML_StopParser(parser_, XML_FALSE);
  }

  static void XMLCALL on_start(void* self_v, const XML_Char* name, const XML_Char** attrs) {
    auto* self = static_cast<TreeBuilder*>(self_v);
    if (self->stop_reason_) return;
    if (static_cast<int>(self->stack_.size()) >= kMaxXmppDepth) {
      self->stop("elements nested deeper than " + std::to_string(kMaxXmppDepth));
      return;
    }
    if (++self->count_ > kMaxElements) {
      self->stop("more than " + std::to_string(kMaxElements) + " elements");
      return;
    }
    auto el = std::make_unique<Element>();
    split_name(name, el->ns, el->name);
    for (size_t i = 0; attrs[i] && attrs[i + 1]; i += 2)
      el->attrs.emplace_back(attrs[i], attrs[i + 1]);
    Element* raw = el.get();
    if (self->stack_.empty())
      self->root_ = std::move(el);
    else
      self->stack_.back()->children.push_back(std::move(el));
    self->stack_.push_back(raw);
  }

  static void XMLCALL on_end(void* self_v, const XML_Char*) {
    auto* self = static_cast<TreeBuilder*>(self_v);
    if (!self->stack_.empty()) self->stack_.pop_back();
  }

  static void XMLCALL on_text(void* self_v, const XML_Char* s, int len) {
    auto* self = static_cast<TreeBuilder*>(self_v);
    if (!self->stack_.empty() && len > 0)
      self->stack_.back()->text.append(s, static_cast<size_t>(len));
  }

  static void XMLCALL on_doctype(void* self_v, const XML_Char*, const XML_Char*, const XML_Char*,
                                 int) {
    static_cast<TreeBuilder*>(self_v)->stop("DOCTYPE declarations are not allowed");
  }

  static void XMLCALL on_entity_decl(void* self_v, const XML_Char*, int, const XML_Char*, int,
                                     const XML_Char*, const XML_Char*, const XML_Char*,
                                     const XML_Char*) {
    static_cast<TreeBuilder*>(self_v)->stop("entity declarations are not allowed");
  }

  XML_Parser parser_ = nullptr;
  std::unique_ptr<Element> root_;
  std::vector<Element*> stack_;
  size_t count_ = 0;
  std::optional<std::string> stop_reason_;
};

std::string trim(std::string_view s) {
  const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return std::string(s);
}

std::string attr_key(std::string_view ns, std::string_view local) {
  std::string k(ns);
  k.push_back(kNsSep);
  k.append(local);
  return k;
}

std::vector<std::string> mechanisms_of(const Element& features) {
  std::vector<std::string> out;
  if (const Element* mechs = features.child(kNsSasl, "mechanisms"))
    for (const auto& m : mechs->children)
      if (m->is(kNsSasl, "mechanism")) {
        std::string name = trim(m->text);
        if (!name.empty()) out.push_back(std::move(name));
      }
  return out;
}

// The defined condition of a <stream:error/> (RFC 6120 §4.9.3) and its optional <text/>.
void stream_error_of(const Element& err, std::string& condition, std::string& text) {
  for (const auto& c : err.children) {
    if (c->ns != kNsStreamErrors) continue;
    if (c->name == "text")
      text = trim(c->text);
    else if (condition.empty())
      condition = c->name;
  }
}

void append_attr(std::string& out, std::string_view name, std::string_view value) {
  out += ' ';
  out += name;
  out += "='";
  out += xml_escape(value);
  out += '\'';
}

}  // namespace

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\t':
        out += "&#9;";
        break;
      case '\n':
        out += "&#10;";
        break;
      case '\r':
        out += "&#13;";
        break;
      default:
        if (static_cast<unsigned char>(ch) >= 0x20) out += ch;
        break;
    }
  }
  return out;
}

std::string build_bosh_session_request(uint64_t rid, std::string_view domain,
                                       const BoshSessionParams& params) {
  std::string out = "<body";
  append_attr(out, "rid", std::to_string(rid));
  append_attr(out, "to", domain);
  append_attr(out, "xml:lang", params.lang);
  append_attr(out, "wait", std::to_string(params.wait));
  append_attr(out, "hold", std::to_string(params.hold));
  append_attr(out, "content", "text/xml; charset=utf-8");
  append_attr(out, "ver", "1.6");
  append_attr(out, "xmpp:version", "1.0");
  append_attr(out, "xmlns", kNsHttpBind);
  append_attr(out, "xmlns:xmpp", kNsXBosh);
  out += "/>";
  return out;
}

std::string build_bosh_terminate(uint64_t rid, std::string_view sid) {
  std::string out = "<body";
  append_attr(out, "rid", std::to_string(rid));
  append_attr(out, "sid", sid);
  append_attr(out, "type", "terminate");
  append_attr(out, "xmlns", kNsHttpBind);
  out += "/>";
  return out;
}

BoshResponse parse_bosh_response(std::string_view xml) {
  BoshResponse r;
  std::unique_ptr<Element> root = TreeBuilder().parse(xml, r.error);
  if (!root) return r;
  if (!root->is(kNsHttpBind, "body")) {
    r.error = "root element is " + root->qualified() + ", not a BOSH {" + std::string(kNsHttpBind) +
              "}body";
    return r;
  }
  r.sid = root->attr_or_empty("sid");
  r.type = root->attr_or_empty("type");
  r.condition = root->attr_or_empty("condition");
  r.from = root->attr_or_empty("from");
  for (const auto& c : root->children) {
    if (c->is(kNsStreams, "features")) {
      r.has_stream_features = true;
      for (auto& m : mechanisms_of(*c)) r.sasl_mechanisms.push_back(std::move(m));
    } else if (c->is(kNsStreams, "error")) {
      stream_error_of(*c, r.stream_error, r.stream_error_text);
    }
  }
  return r;
}

std::string build_ws_open(std::string_view domain) {
  std::string out = "<open";
  append_attr(out, "xmlns", kNsFraming);
  append_attr(out, "to", domain);
  append_attr(out, "version", "1.0");
  out += "/>";
  return out;
}

std::string build_ws_close() { return "<close xmlns='" + std::string(kNsFraming) + "'/>"; }

WsFrame parse_ws_frame(std::string_view xml) {
  WsFrame f;
  std::unique_ptr<Element> root = TreeBuilder().parse(xml, f.error);
  if (!root) {
    f.kind = WsFrame::Kind::invalid;
    return f;
  }
  f.name = root->qualified();
  if (root->is(kNsFraming, "open")) {
    f.kind = WsFrame::Kind::open;
    f.id = root->attr_or_empty("id");
    f.from = root->attr_or_empty("from");
    f.version = root->attr_or_empty("version");
    f.lang = root->attr_or_empty(attr_key(kNsXml, "lang"));
  } else if (root->is(kNsFraming, "close")) {
    f.kind = WsFrame::Kind::close;
    f.see_other_uri = root->attr_or_empty("see-other-uri");
  } else if (root->is(kNsStreams, "features")) {
    f.kind = WsFrame::Kind::features;
    f.sasl_mechanisms = mechanisms_of(*root);
  } else if (root->is(kNsStreams, "error")) {
    f.kind = WsFrame::Kind::stream_error;
    stream_error_of(*root, f.condition, f.text);
  } else {
    f.kind = WsFrame::Kind::other;
  }
  return f;
}

std::string_view ws_frame_kind_name(WsFrame::Kind kind) {
  switch (kind) {
    case WsFrame::Kind::invalid:
      return "invalid";
    case WsFrame::Kind::open:
      return "open";
    case WsFrame::Kind::features:
      return "features";
    case WsFrame::Kind::close:
      return "close";
    case WsFrame::Kind::stream_error:
      return "stream_error";
    case WsFrame::Kind::other:
      return "other";
  }
  return "?";
}

}  // namespace pes::jitsi
