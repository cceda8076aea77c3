/*
 * core/crash.c — the crash report of a program that loads plugins: a
 * plugin that crashes (a NULL dereference in init, secure memory freed
 * with the plain allocator, which aborts in the C library) takes the whole
 * process down; the handler installed here names the plugin and the
 * operation that was running before the process dies of its signal, so the
 * operator knows which plugin to blame.
 *
 * The handler is async-signal-safe: it reads the plain pointers the host
 * keeps for the call in progress (envdbi_host_current_call), formats with
 * write(2) only, restores the default action and re-raises the signal, so
 * the exit status and a core dump (when enabled) are what they would have
 * been.  It runs on an alternate stack, so a stack overflow is reported
 * too.
 */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define ALT_STACK_SIZE (64 * 1024)

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

static void put(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, s, n);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static const char *signal_name(int sig)
{
	switch (sig) {
	case SIGSEGV:
		return "SIGSEGV";
	case SIGBUS:
		return "SIGBUS";
	case SIGILL:
		return "SIGILL";
	case SIGFPE:
		return "SIGFPE";
	case SIGABRT:
		return "SIGABRT";
	default:
		return "a fatal signal";
	}
}

static void on_crash(int sig)
{
	const char *plugin = NULL, *op = NULL;
	bool here = envdbi_host_current_call(&plugin, &op);

	if (here) {
		put("envdb: crashed in plugin ");
		put(plugin);
		put(" during ");
		put(op);
		put(" (");
		put(signal_name(sig));
		put(")\n");
	} else if (plugin != NULL) {
		put("envdb: crashed (");
		put(signal_name(sig));
		put(") outside a plugin call on this thread; the last plugin call begun was ");
		put(plugin);
		put(" ");
		put(op);
		put("\n");
	} else {
		put("envdb: crashed (");
		put(signal_name(sig));
		put(") before any plugin call\n");
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

void envdb_crash_report_install(void)
{
	static char alt[ALT_STACK_SIZE];
	struct sigaction sa;
	stack_t ss;
	size_t i;

	memset(&ss, 0, sizeof(ss));
	ss.ss_sp = alt;
	ss.ss_size = sizeof(alt);
	(void)sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_crash;
	sa.sa_flags = SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
		(void)sigaction(crash_signals[i], &sa, NULL);
}
