/*
 * reply.h - reading one field of a daemon reply (a JSON object).
 *
 * Each returns the field only when it has the type asked for: a missing or
 * mistyped field reads as absent (NULL, false), never as a default. Header
 * only; any thread (jansson objects are not shared between threads here).
 */
#ifndef TRAIND_CLIENT_REPLY_H
#define TRAIND_CLIENT_REPLY_H

#include <jansson.h>
#include <stdbool.h>

/* The string at o[key], or NULL. */
static inline const char *pstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The integer at o[key] into *out; false (and *out untouched) if none. */
static inline bool pint(json_t *o, const char *key, long long *out)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		return false;
	*out = (long long)json_integer_value(v);
	return true;
}

/* The number (integer or real) at o[key] into *out; false if none. */
static inline bool pnum(json_t *o, const char *key, double *out)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_number(v))
		return false;
	*out = json_number_value(v);
	return true;
}

#endif
