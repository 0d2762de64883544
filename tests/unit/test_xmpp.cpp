// BOSH and XMPP-over-WebSocket builders and parsers (probes/jitsi/xmpp.h).
//
// Where the response shapes come from: every "Prosody 0.12" string below was captured verbatim
// (only the random session ids shortened where noted) from Debian 12's prosody 0.12.3-1+deb12u1,
// mod_bosh and mod_websocket, run on 127.0.0.1 with a VirtualHost "meet.example.test" and
// `authentication = "anonymous"`, the way Jitsi Meet configures its guest domain; BOSH via
// curl POSTs to /http-bind, WebSocket via a small client on /xmpp-websocket (protocol "xmpp").
// The shapes match mod_bosh.lua / mod_websocket.lua in /usr/lib/prosody/modules. Note that
// Prosody 0.12 answers a BOSH request for an unknown domain with condition='improper-addressing';
// 'host-unknown' is the XEP-0124 §17.2 condition older Prosody and other managers send, and what
// Prosody 0.12 puts in the WebSocket <stream:error/>.
#include <gtest/gtest.h>

#include <string>

#include "probes/jitsi/xmpp.h"

namespace pes::jitsi {
namespace {

// ---- builders --------------------------------------------------------------------------------

TEST(BoshBuild, SessionRequestHasEveryXep0206Attribute) {
  const std::string req = build_bosh_session_request(1573741820, "meet.example.test");
  EXPECT_EQ(req,
            "<body rid='1573741820' to='meet.example.test' xml:lang='en' wait='10' hold='1'"
            " content='text/xml; charset=utf-8' ver='1.6' xmpp:version='1.0'"
            " xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>");
}

TEST(BoshBuild, SessionRequestParamsAreUsed) {
  const std::string req = build_bosh_session_request(7, "d", {.wait = 3, .hold = 0, .lang = "de"});
  EXPECT_NE(req.find("wait='3'"), std::string::npos);
  EXPECT_NE(req.find("hold='0'"), std::string::npos);
  EXPECT_NE(req.find("xml:lang='de'"), std::string::npos);
}

TEST(BoshBuild, DomainIsEscaped) {
  const std::string req = build_bosh_session_request(1, "a'b\"c<d>&e\x01\n");
  EXPECT_NE(req.find("to='a&apos;b&quot;c&lt;d&gt;&amp;e&#10;'"), std::string::npos) << req;
  // Whatever the domain, the request stays one well-formed element a server can parse; our own
  // parser is a fair judge of well-formedness.
  const BoshResponse r = parse_bosh_response(req);
  EXPECT_TRUE(r.ok()) << r.error;
}

TEST(BoshBuild, Terminate) {
  EXPECT_EQ(build_bosh_terminate(42, "s'id"),
            "<body rid='42' sid='s&apos;id' type='terminate' "
            "xmlns='http://jabber.org/protocol/httpbind'/>");
}

TEST(XmlEscape, AllSpecials) {
  EXPECT_EQ(xml_escape("plain.example"), "plain.example");
  EXPECT_EQ(xml_escape("<&>'\"\t\r"), "&lt;&amp;&gt;&apos;&quot;&#9;&#13;");
  EXPECT_EQ(xml_escape(std::string("a\0b\x1f", 4)), "ab");
  EXPECT_EQ(xml_escape("dömäin"), "dömäin");  // UTF-8 passes through
}

TEST(WsBuild, OpenAndClose) {
  EXPECT_EQ(
      build_ws_open("meet.example.test"),
      "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='meet.example.test' version='1.0'/>");
  EXPECT_EQ(build_ws_open("x'y"),
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x&apos;y' version='1.0'/>");
  EXPECT_EQ(build_ws_close(), "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
}

// ---- BOSH responses ---------------------------------------------------------------------------

// Prosody 0.12: session creation for an anonymous host (attribute order is Lua table order).
constexpr const char* kProsodySessionCreated =
    "<body authid='634d7602-5297-44cd-9652-00b3fd44df41' sid='634d7602-5297-44cd-9652-00b3fd44df41'"
    " xmpp:version='1.0' polling='5' wait='10' inactivity='60' requests='2' secure='true' hold='1'"
    " from='meet.example.test' xmlns:stream='http://etherx.jabber.org/streams' ver='1.6'"
    " xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'>"
    "<stream:features xmlns='jabber:client'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    "<mechanism>ANONYMOUS</mechanism></mechanisms></stream:features></body>";

TEST(BoshParse, ProsodySessionCreationWithAnonymous) {
  const BoshResponse r = parse_bosh_response(kProsodySessionCreated);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.sid, "634d7602-5297-44cd-9652-00b3fd44df41");
  EXPECT_EQ(r.type, "");
  EXPECT_FALSE(r.terminated());
  EXPECT_EQ(r.from, "meet.example.test");
  EXPECT_TRUE(r.has_stream_features);
  EXPECT_EQ(r.sasl_mechanisms, std::vector<std::string>{"ANONYMOUS"});
}

TEST(BoshParse, ProsodySessionCreationWithoutSasl) {
  // Prosody 0.12 without mod_saslauth: features present but empty.
  const BoshResponse r = parse_bosh_response(
      "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' hold='1'"
      " from='meet.example.test' inactivity='60' authid='5996' secure='true' polling='5'"
      " xmpp:version='1.0' wait='10' ver='1.6' xmlns:stream='http://etherx.jabber.org/streams'"
      " requests='2' sid='5996'><stream:features xmlns='jabber:client'/></body>");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.sid, "5996");
  EXPECT_TRUE(r.has_stream_features);
  EXPECT_TRUE(r.sasl_mechanisms.empty());
}

TEST(BoshParse, SeveralMechanismsInOrderWithWhitespace) {
  // ejabberd/Openfire style: features bound by prefix on the features element itself, pretty
  // printed; several mechanisms.
  const BoshResponse r = parse_bosh_response(R"(<?xml version="1.0" encoding="UTF-8"?>
<body xmlns="http://jabber.org/protocol/httpbind" sid="abc" wait="10">
  <s:features xmlns:s="http://etherx.jabber.org/streams">
    <mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl">
      <mechanism> SCRAM-SHA-1 </mechanism>
      <mechanism>PLAIN</mechanism>
      <mechanism>ANONYMOUS</mechanism>
    </mechanisms>
  </s:features>
</body>)");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.has_stream_features);
  EXPECT_EQ(r.sasl_mechanisms, (std::vector<std::string>{"SCRAM-SHA-1", "PLAIN", "ANONYMOUS"}));
}

TEST(BoshParse, TerminateHostUnknown) {
  // XEP-0124 §17.2 shape, as sent by Prosody before 0.12 and by other connection managers.
  const BoshResponse r = parse_bosh_response(
      "<body xmlns:stream='http://etherx.jabber.org/streams' "
      "xmlns='http://jabber.org/protocol/httpbind'"
      " type='terminate' condition='host-unknown'/>");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.terminated());
  EXPECT_EQ(r.condition, "host-unknown");
  EXPECT_EQ(r.sid, "");
  EXPECT_FALSE(r.has_stream_features);
}

TEST(BoshParse, ProsodyTerminateImproperAddressing) {
  // Prosody 0.12 for to='nope.example.test' (a domain it does not serve).
  const BoshResponse r = parse_bosh_response(
      "<body xmlns:stream='http://etherx.jabber.org/streams' "
      "xmlns='http://jabber.org/protocol/httpbind'"
      " type='terminate' condition='improper-addressing'/>");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.terminated());
  EXPECT_EQ(r.condition, "improper-addressing");
}

TEST(BoshParse, ProsodyTerminateItemNotFound) {
  // Prosody 0.12 for an unknown sid.
  const BoshResponse r = parse_bosh_response(
      "<body condition='item-not-found' xmlns='http://jabber.org/protocol/httpbind' "
      "type='terminate'/>");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.condition, "item-not-found");
}

TEST(BoshParse, ProsodyRemoteStreamError) {
  // Prosody 0.12 after an unsupported element was sent on an open session.
  const BoshResponse r = parse_bosh_response(
      "<body xmlns:stream='http://etherx.jabber.org/streams' condition='remote-stream-error'"
      " xmlns='http://jabber.org/protocol/httpbind' type='terminate'><stream:error>"
      "<unsupported-stanza-type "
      "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></body>");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.condition, "remote-stream-error");
  EXPECT_EQ(r.stream_error, "unsupported-stanza-type");
  EXPECT_EQ(r.stream_error_text, "");
}

TEST(BoshParse, RemoteStreamErrorWithText) {
  const BoshResponse r = parse_bosh_response(
      "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' "
      "condition='remote-stream-error'"
      " xmlns:stream='http://etherx.jabber.org/streams'><stream:error>"
      "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Error processing stream</text>"
      "<bad-format xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></body>");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.stream_error, "bad-format");
  EXPECT_EQ(r.stream_error_text, "Error processing stream");
}

TEST(BoshParse, NamespacesNotPrefixesDecide) {
  // A features element in the wrong namespace is not stream features, whatever its prefix; a
  // mechanisms element outside the SASL namespace lists nothing.
  const BoshResponse wrong_ns = parse_bosh_response(
      "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='urn:example:not-streams'>"
      "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
      "<mechanism>ANONYMOUS</mechanism></mechanisms></stream:features></body>");
  ASSERT_TRUE(wrong_ns.ok()) << wrong_ns.error;
  EXPECT_FALSE(wrong_ns.has_stream_features);
  EXPECT_TRUE(wrong_ns.sasl_mechanisms.empty());

  const BoshResponse wrong_sasl = parse_bosh_response(
      "<body xmlns='http://jabber.org/protocol/httpbind'>"
      "<features xmlns='http://etherx.jabber.org/streams'><mechanisms>"
      "<mechanism>PLAIN</mechanism></mechanisms></features></body>");
  ASSERT_TRUE(wrong_sasl.ok()) << wrong_sasl.error;
  EXPECT_TRUE(wrong_sasl.has_stream_features);
  EXPECT_TRUE(wrong_sasl.sasl_mechanisms.empty());
}

TEST(BoshParse, WrongRootElement) {
  // The /http-bind path answered by something else (an HTML error page that happens to be XML,
  // or a body without the httpbind namespace).
  const BoshResponse html = parse_bosh_response("<html><body>502 Bad Gateway</body></html>");
  EXPECT_FALSE(html.ok());
  EXPECT_NE(html.error.find("{}html"), std::string::npos) << html.error;
  const BoshResponse no_ns = parse_bosh_response("<body sid='x'/>");
  EXPECT_FALSE(no_ns.ok());
}

TEST(BoshParse, MalformedXmlReportsExpatMessageAndPosition) {
  const BoshResponse r =
      parse_bosh_response("<body xmlns='http://jabber.org/protocol/httpbind'>\n  <a></b>\n</body>");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("mismatched tag"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("line 2"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("column"), std::string::npos) << r.error;
}

TEST(BoshParse, UnboundPrefixIsAnError) {
  const BoshResponse r = parse_bosh_response(
      "<body xmlns='http://jabber.org/protocol/httpbind'><stream:features/></body>");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("unbound prefix"), std::string::npos) << r.error;
}

TEST(BoshParse, TruncatedInputAtEveryLengthIsAnErrorNotACrash) {
  const std::string full = kProsodySessionCreated;
  for (size_t n = 0; n < full.size(); ++n) {
    const BoshResponse r = parse_bosh_response(std::string_view(full).substr(0, n));
    EXPECT_FALSE(r.ok()) << "accepted a " << n << "-byte prefix";
    EXPECT_TRUE(r.sasl_mechanisms.empty());
  }
  EXPECT_TRUE(parse_bosh_response(full).ok());
}

TEST(BoshParse, EmptyInput) {
  const BoshResponse r = parse_bosh_response("");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("no element found"), std::string::npos) << r.error;
}

// ---- hostile input -----------------------------------------------------------------------------

TEST(XmppHostile, BillionLaughsIsRejectedAtTheDoctype) {
  std::string bomb = "<?xml version='1.0'?>\n<!DOCTYPE body [\n<!ENTITY lol 'lol'>\n";
  for (int i = 1; i <= 9; ++i) {
    bomb += "<!ENTITY lol" + std::to_string(i) + " '";
    for (int k = 0; k < 10; ++k)
      bomb += "&lol" + (i == 1 ? std::string() : std::to_string(i - 1)) + ";";
    bomb += "'>\n";
  }
  bomb += "]>\n<body xmlns='http://jabber.org/protocol/httpbind' sid='&lol9;'/>";
  const BoshResponse r = parse_bosh_response(bomb);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("DOCTYPE"), std::string::npos) << r.error;
  EXPECT_TRUE(r.sid.empty());
  const WsFrame f = parse_ws_frame(bomb);
  EXPECT_EQ(f.kind, WsFrame::Kind::invalid);
  EXPECT_NE(f.error.find("DOCTYPE"), std::string::npos) << f.error;
}

TEST(XmppHostile, AnyDoctypeIsRejectedEvenWithoutEntities) {
  const BoshResponse r = parse_bosh_response(
      "<!DOCTYPE body SYSTEM 'file:///etc/passwd'><body "
      "xmlns='http://jabber.org/protocol/httpbind'/>");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("DOCTYPE"), std::string::npos) << r.error;
}

TEST(XmppHostile, UndeclaredEntityIsAnError) {
  const BoshResponse r =
      parse_bosh_response("<body xmlns='http://jabber.org/protocol/httpbind' sid='&xxe;'/>");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("undefined entity"), std::string::npos) << r.error;
}

TEST(XmppHostile, InputAboveOneMebibyteIsRefused) {
  std::string big = "<body xmlns='http://jabber.org/protocol/httpbind'>";
  big += std::string(kMaxXmppInputBytes, 'x');
  big += "</body>";
  const BoshResponse r = parse_bosh_response(big);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("limit"), std::string::npos) << r.error;

  // Just under the cap is fine.
  std::string ok = "<body xmlns='http://jabber.org/protocol/httpbind'>";
  ok += std::string(kMaxXmppInputBytes - ok.size() - 7, 'x');
  ok += "</body>";
  ASSERT_EQ(ok.size(), kMaxXmppInputBytes);
  EXPECT_TRUE(parse_bosh_response(ok).ok());
}

TEST(XmppHostile, DeepNestingIsRefused) {
  std::string deep = "<body xmlns='http://jabber.org/protocol/httpbind'>";
  for (int i = 0; i < 100000; ++i) deep += "<a>";
  const BoshResponse r = parse_bosh_response(deep);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("nested"), std::string::npos) << r.error;
}

TEST(XmppHostile, ManyElementsAreRefused) {
  std::string wide = "<body xmlns='http://jabber.org/protocol/httpbind'>";
  for (int i = 0; i < 20000; ++i) wide += "<a/>";
  wide += "</body>";
  const BoshResponse r = parse_bosh_response(wide);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("elements"), std::string::npos) << r.error;
}

TEST(XmppHostile, InvalidUtf8IsAnError) {
  const BoshResponse r =
      parse_bosh_response("<body xmlns='http://jabber.org/protocol/httpbind' sid='\xff\xfe'/>");
  EXPECT_FALSE(r.ok());
}

// ---- WebSocket frames ---------------------------------------------------------------------

TEST(WsParse, ProsodyOpen) {
  const WsFrame f = parse_ws_frame(
      "<open xml:lang='en' from='meet.example.test' id='7f2f23d8-574b-47e2-afa3-81ad3d78410d'"
      " xmlns='urn:ietf:params:xml:ns:xmpp-framing' version='1.0'/>");
  ASSERT_EQ(f.kind, WsFrame::Kind::open) << f.error;
  EXPECT_EQ(f.id, "7f2f23d8-574b-47e2-afa3-81ad3d78410d");
  EXPECT_EQ(f.from, "meet.example.test");
  EXPECT_EQ(f.version, "1.0");
  EXPECT_EQ(f.lang, "en");
}

TEST(WsParse, ProsodyFeatures) {
  const WsFrame f = parse_ws_frame(
      "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
      "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism>"
      "</mechanisms></stream:features>");
  ASSERT_EQ(f.kind, WsFrame::Kind::features) << f.error;
  EXPECT_EQ(f.sasl_mechanisms, std::vector<std::string>{"ANONYMOUS"});
}

TEST(WsParse, ProsodyClose) {
  const WsFrame f = parse_ws_frame("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
  ASSERT_EQ(f.kind, WsFrame::Kind::close) << f.error;
  EXPECT_EQ(f.see_other_uri, "");
}

TEST(WsParse, CloseWithSeeOtherUri) {
  // RFC 7395 §3.6.1 example.
  const WsFrame f = parse_ws_frame(
      "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' "
      "see-other-uri='wss://otherendpoint.example/xmpp-bind'/>");
  ASSERT_EQ(f.kind, WsFrame::Kind::close) << f.error;
  EXPECT_EQ(f.see_other_uri, "wss://otherendpoint.example/xmpp-bind");
}

TEST(WsParse, ProsodyStreamErrorHostUnknown) {
  // Prosody 0.12 after <open to='nope.example.test'/>; it then sends <close/> and closes.
  const WsFrame f = parse_ws_frame(
      "<stream:error xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
      "<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
      "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>This server does not serve "
      "nope.example.test</text>"
      "</stream:error>");
  ASSERT_EQ(f.kind, WsFrame::Kind::stream_error) << f.error;
  EXPECT_EQ(f.condition, "host-unknown");
  EXPECT_EQ(f.text, "This server does not serve nope.example.test");
}

TEST(WsParse, OtherElementsAreNamed) {
  const WsFrame f = parse_ws_frame("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
  EXPECT_EQ(f.kind, WsFrame::Kind::other);
  EXPECT_EQ(f.name, "{urn:ietf:params:xml:ns:xmpp-sasl}success");
  // An <open/> outside the framing namespace is not a framing open.
  EXPECT_EQ(parse_ws_frame("<open xmlns='jabber:client' id='x'/>").kind, WsFrame::Kind::other);
}

TEST(WsParse, InvalidFrames) {
  for (const char* bad :
       {"", " ", "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'",
        // the legacy (pre-RFC 7395) stream opening is not a complete element
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
        // two elements in one message
        "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/><close/>", "<stream:features/>"}) {
    const WsFrame f = parse_ws_frame(bad);
    EXPECT_EQ(f.kind, WsFrame::Kind::invalid) << bad;
    EXPECT_FALSE(f.ok());
    EXPECT_FALSE(f.error.empty()) << bad;
  }
  EXPECT_EQ(ws_frame_kind_name(WsFrame::Kind::stream_error), "stream_error");
}

TEST(WsParse, TruncatedFeaturesAtEveryLength) {
  const std::string full =
      "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
      "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism>"
      "</mechanisms></stream:features>";
  for (size_t n = 0; n < full.size(); ++n)
    EXPECT_EQ(parse_ws_frame(std::string_view(full).substr(0, n)).kind, WsFrame::Kind::invalid)
        << n;
}

}  // namespace
}  // namespace pes::jitsi
