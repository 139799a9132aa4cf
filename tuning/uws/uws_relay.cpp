// A third peer for `feedrelay bench`: the bench's client contract served by
// uWebSockets (C++, epoll, one thread), configured as its own documentation and
// examples recommend for pub/sub. Built by tuning/uws.sh from a uWebSockets source
// tree the user provides (it is not on the registries this repository installs from).
//
// The contract (the same as benches/baseline_relay.rs):
// - `GET /pub` upgrades a publisher: each text or binary message is relayed to the
//   subscribers of its topic, read from the JSON member `"s"`;
// - `GET /ws?topics=A,B` or `?topics=*` upgrades a subscriber, which first gets
//   `{"event":"subscribed","topics":[...]}`.
//
// Topics: uWebSockets' topic tree has no wildcard, so every message is published to its
// own topic and to `*`, and a subscriber asks for `*` alone or for named topics.
// Publishing goes through the app's topic tree: uWebSockets copies each message once,
// queues it per subscriber and writes each subscriber's queue once per loop iteration
// (corked), which is its batching. No compression, 1 MiB messages, 64 MiB of
// backpressure per subscriber before it is closed (the bench counts any loss).
//
// Usage: uws_relay --listen 127.0.0.1:0 [--threads 1]; prints
// `uws_relay listening on ws://ADDR` once it listens. A uWebSockets app is one thread
// (its topic tree is per app), so only `--threads 1` is accepted.

#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Peer {
    bool publisher = false;
    std::vector<std::string> topics;
};

// The value of the message's `"s"` member, when the message starts with it as the
// bench's publisher (and an exchange adapter that puts the symbol first) writes it.
// A message without it is published to `*` only.
std::string_view topic_of(std::string_view msg) {
    constexpr std::string_view key = "\"s\":\"";
    size_t at = msg.find(key);
    if (at == std::string_view::npos || at > 16) {
        return {};
    }
    size_t from = at + key.size();
    size_t to = msg.find('"', from);
    if (to == std::string_view::npos) {
        return {};
    }
    return msg.substr(from, to - from);
}

std::vector<std::string> split_topics(std::string_view query) {
    std::vector<std::string> out;
    while (!query.empty()) {
        size_t comma = query.find(',');
        std::string_view one = query.substr(0, comma);
        if (!one.empty()) {
            out.emplace_back(one);
        }
        if (comma == std::string_view::npos) {
            break;
        }
        query.remove_prefix(comma + 1);
    }
    return out;
}

// Appends `s` as a JSON string: quotes, backslashes and control characters escaped (a
// topic comes from the client's query string, so it may hold any of them).
void append_json_string(std::string &out, std::string_view s) {
    out += '"';
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
            char esc[7];
            std::snprintf(esc, sizeof esc, "\\u%04x", c);
            out += esc;
        } else {
            out += static_cast<char>(c);
        }
    }
    out += '"';
}

std::string subscribed_reply(const std::vector<std::string> &topics) {
    std::string reply = "{\"event\":\"subscribed\",\"topics\":[";
    for (size_t i = 0; i < topics.size(); i++) {
        if (i) {
            reply += ',';
        }
        append_json_string(reply, topics[i]);
    }
    reply += "]}";
    return reply;
}

// A port number, 0 to 65535, all digits; -1 for anything else.
int parse_port(std::string_view s) {
    if (s.empty() || s.size() > 5) {
        return -1;
    }
    int port = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return -1;
        }
        port = port * 10 + (c - '0');
    }
    return port <= 65535 ? port : -1;
}

[[noreturn]] void usage(const char *why) {
    std::fprintf(stderr, "uws_relay: %s\nusage: uws_relay --listen HOST:PORT [--threads 1]\n", why);
    std::exit(2);
}

}  // namespace

int main(int argc, char **argv) {
    std::string host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i < argc; i++) {
        std::string_view arg = argv[i];
        if (i + 1 >= argc) {
            usage("a flag without its value");
        }
        std::string_view value = argv[++i];
        if (arg == "--listen") {
            size_t colon = value.rfind(':');
            if (colon == std::string_view::npos) {
                usage("--listen wants HOST:PORT");
            }
            host = std::string(value.substr(0, colon));
            port = parse_port(value.substr(colon + 1));
            if (port < 0) {
                usage("--listen wants a port of 0 to 65535 after the colon");
            }
        } else if (arg == "--threads") {
            if (value != "1") {
                usage("a uWebSockets app is one thread: --threads 1 only");
            }
        } else {
            usage("unknown flag");
        }
    }

    uWS::App app;
    uWS::App *relay = &app;
    app.ws<Peer>("/*", {
        .compression = uWS::DISABLED,
        .maxPayloadLength = 1 << 20,
        .idleTimeout = 120,
        .maxBackpressure = 64 << 20,
        .closeOnBackpressureLimit = true,
        .resetIdleTimeoutOnSend = false,
        .sendPingsAutomatically = true,
        .upgrade = [](auto *res, auto *req, auto *context) {
            Peer peer;
            std::string_view url = req->getUrl();
            if (url == "/pub") {
                peer.publisher = true;
            } else if (url == "/ws") {
                peer.topics = split_topics(req->getQuery("topics"));
            }
            if (!peer.publisher && peer.topics.empty()) {
                res->writeStatus("404 Not Found")->end("want /pub or /ws?topics=...");
                return;
            }
            res->template upgrade<Peer>(std::move(peer),
                req->getHeader("sec-websocket-key"),
                req->getHeader("sec-websocket-protocol"),
                req->getHeader("sec-websocket-extensions"),
                context);
        },
        .open = [](auto *ws) {
            Peer *peer = ws->getUserData();
            if (peer->publisher) {
                return;
            }
            for (const std::string &t : peer->topics) {
                ws->subscribe(t);
            }
            ws->send(subscribed_reply(peer->topics), uWS::OpCode::TEXT);
        },
        .message = [relay](auto *ws, std::string_view message, uWS::OpCode op) {
            if (!ws->getUserData()->publisher) {
                return;
            }
            std::string_view topic = topic_of(message);
            // Only a topic with subscribers: publishing copies the message first.
            if (!topic.empty() && relay->numSubscribers(topic) > 0) {
                relay->publish(topic, message, op);
            }
            relay->publish("*", message, op);
        },
    });
    bool listening = false;
    app.listen(host, port, [&](us_listen_socket_t *socket) {
        if (!socket) {
            return;
        }
        listening = true;
        int bound = us_socket_local_port(0, reinterpret_cast<us_socket_t *>(socket));
        std::printf("uws_relay listening on ws://%s:%d (1 thread)\n", host.c_str(), bound);
        std::fflush(stdout);
    });
    if (!listening) {
        std::fprintf(stderr, "uws_relay: cannot listen on %s:%d\n", host.c_str(), port);
        return 1;
    }
    app.run();
    return 0;
}
