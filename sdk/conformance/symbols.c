/*
 * sdk/conformance/symbols.c — what the plugin's shared object exports: a
 * plugin exports exactly its entry symbol (envdb_plugin_entry_v1, or the
 * libtool-prefixed <module>_LTX_ form); anything else it exports can bind
 * to, or be bound by, another module of the process.  Read from the ELF
 * dynamic symbol table of the file (SHT_DYNSYM and its string table).
 */
#include "config.h"

#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kit.h"

#define CHECK "exports: only the entry symbol"

/* Symbols every shared object defines (linker-made), not the plugin's. */
static bool linker_symbol(const char *name)
{
	static const char *const names[] = {"_init", "_fini", "_edata", "_end", "__bss_start",
					    "_DYNAMIC", "_GLOBAL_OFFSET_TABLE_"};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return false;
}

static bool entry_symbol(const char *name)
{
	const char *ltx = strstr(name, "_LTX_");

	return strcmp(name, ENVDB_PLUGIN_ENTRY_SYMBOL) == 0 ||
	       (ltx != NULL && strcmp(ltx + 5, ENVDB_PLUGIN_ENTRY_SYMBOL) == 0);
}

void kit_check_exports(const char *path)
{
	char extra[512] = "";
	size_t used = 0, n_extra = 0, i, j;
	const unsigned char *img;
	const Elf64_Ehdr *eh;
	const Elf64_Shdr *sh;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(Elf64_Ehdr)) {
		if (fd >= 0)
			close(fd);
		kit_skip(CHECK, "cannot read %s", path);
		return;
	}
	img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (img == MAP_FAILED) {
		kit_skip(CHECK, "cannot map %s", path);
		return;
	}
	eh = (const Elf64_Ehdr *)img;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr) ||
	    eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > (size_t)st.st_size) {
		kit_skip(CHECK, "%s is not a 64-bit ELF object the kit can read", path);
		goto done;
	}
	sh = (const Elf64_Shdr *)(img + eh->e_shoff);
	for (i = 0; i < eh->e_shnum; i++) {
		const Elf64_Shdr *str;
		const Elf64_Sym *sym;

		if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh->e_shnum)
			continue;
		str = &sh[sh[i].sh_link];
		if (sh[i].sh_offset + sh[i].sh_size > (size_t)st.st_size ||
		    str->sh_offset + str->sh_size > (size_t)st.st_size ||
		    sh[i].sh_entsize != sizeof(Elf64_Sym))
			continue;
		sym = (const Elf64_Sym *)(img + sh[i].sh_offset);
		for (j = 0; j < sh[i].sh_size / sizeof(Elf64_Sym); j++) {
			const char *name;
			int bind = ELF64_ST_BIND(sym[j].st_info);
			int vis = ELF64_ST_VISIBILITY(sym[j].st_other);

			if (sym[j].st_shndx == SHN_UNDEF || sym[j].st_name >= str->sh_size ||
			    (bind != STB_GLOBAL && bind != STB_WEAK) ||
			    (vis != STV_DEFAULT && vis != STV_PROTECTED))
				continue;
			name = (const char *)img + str->sh_offset + sym[j].st_name;
			if (name[0] == '\0' || entry_symbol(name) || linker_symbol(name))
				continue;
			if (n_extra++ < 8 && used < sizeof(extra)) {
				int w = snprintf(extra + used, sizeof(extra) - used, "%s%s",
						 used ? ", " : "", name);
				if (w > 0)
					used += (size_t)w;
			}
		}
	}
	kit_check(n_extra == 0, CHECK,
		  "%s also exports %zu symbol(s): %s%s; export only %s (build with "
		  "-fvisibility=hidden, libtool -export-symbols-regex or a version script)",
		  path, n_extra, extra, n_extra > 8 ? ", ..." : "", ENVDB_PLUGIN_ENTRY_SYMBOL);
done:
	munmap((void *)img, (size_t)st.st_size);
}
