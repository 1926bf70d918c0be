/*
 * acl.c - who may talk to the daemon, and who may read or write what.
 *
 * Identities come from SO_PEERCRED at accept, so a client cannot claim to
 * be someone else. Lists hold user or group names or numeric ids, resolved
 * when the config is loaded (an unknown name is a config error, not a
 * silent deny). An empty list means "whoever can open the socket".
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

#define MAX_GROUPS	256

static int
add_id(struct idlist *l, unsigned id)
{
	unsigned *p;

	if ((p = reallocarray(l->ids, l->n + 1, sizeof(*p))) == NULL)
		return -1;
	l->ids = p;
	l->ids[l->n++] = id;
	return 0;
}

/* "alice, 1001 bob": names or ids, commas and/or spaces between. */
int
idlist_parse(struct idlist *l, const char *spec, int groups, char *err,
    size_t errlen)
{
	char *copy, *tok, *save = NULL, *end;
	unsigned long v;
	struct passwd *pw;
	struct group *gr;
	int rc = 0;

	idlist_free(l);
	if ((copy = strdup(spec)) == NULL)
		return -1;
	for (tok = strtok_r(copy, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save)) {
		errno = 0;
		v = strtoul(tok, &end, 10);
		if (*end == '\0' && errno == 0 && v < 0xffffffffUL) {
			rc = add_id(l, (unsigned)v);
		} else if (groups && (gr = getgrnam(tok)) != NULL) {
			rc = add_id(l, (unsigned)gr->gr_gid);
		} else if (!groups && (pw = getpwnam(tok)) != NULL) {
			rc = add_id(l, (unsigned)pw->pw_uid);
		} else {
			snprintf(err, errlen, "no such %s \"%s\"",
			    groups ? "group" : "user", tok);
			rc = -1;
		}
		if (rc < 0)
			break;
	}
	free(copy);
	return rc;
}

void
idlist_free(struct idlist *l)
{
	free(l->ids);
	l->ids = NULL;
	l->n = 0;
}

int
idlist_copy(struct idlist *dst, const struct idlist *src)
{
	dst->n = 0;
	dst->ids = NULL;
	if (src->n == 0)
		return 0;
	if ((dst->ids = calloc(src->n, sizeof(*dst->ids))) == NULL)
		return -1;
	memcpy(dst->ids, src->ids, src->n * sizeof(*dst->ids));
	dst->n = src->n;
	return 0;
}

static int
has(const struct idlist *l, unsigned id)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		if (l->ids[i] == id)
			return 1;
	}
	return 0;
}

void
access_copy(struct access *dst, const struct access *src)
{
	if (idlist_copy(&dst->read_users, &src->read_users) < 0 ||
	    idlist_copy(&dst->read_groups, &src->read_groups) < 0 ||
	    idlist_copy(&dst->write_users, &src->write_users) < 0 ||
	    idlist_copy(&dst->write_groups, &src->write_groups) < 0)
		fatalx("out of memory");
}

void
access_free(struct access *a)
{
	idlist_free(&a->read_users);
	idlist_free(&a->read_groups);
	idlist_free(&a->write_users);
	idlist_free(&a->write_groups);
}

/* The peer's groups: its primary gid plus its user's supplementary ones. */
void
peer_groups(struct peer *p)
{
	struct passwd *pw;
	gid_t groups[MAX_GROUPS];
	int n = MAX_GROUPS, i;

	p->ngroups = 0;
	p->groups[p->ngroups++] = p->gid;
	if ((pw = getpwuid(p->uid)) == NULL ||
	    getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
		return;
	for (i = 0; i < n && p->ngroups < PEER_MAX_GROUPS; i++) {
		if (groups[i] != p->gid)
			p->groups[p->ngroups++] = groups[i];
	}
}

/* May this peer pass? Both lists empty: yes. */
int
acl_allows(const struct idlist *users, const struct idlist *groups,
    struct peer *p)
{
	int i;

	if (users->n == 0 && groups->n == 0)
		return 1;
	if (has(users, (unsigned)p->uid))
		return 1;
	if (groups->n > 0 && p->ngroups == 0)
		peer_groups(p);
	for (i = 0; i < p->ngroups; i++) {
		if (has(groups, (unsigned)p->groups[i]))
			return 1;
	}
	return 0;
}
