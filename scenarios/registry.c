/* registry.c — every scenario pgrace knows, in `pgrace list` order. */
#include "pgrace.h"

#include <string.h>

extern const pgr_scenario pgr_scenario_form_submission;        /* seed 000 */
extern const pgr_scenario pgr_scenario_invite_claim;           /* seed 001 */
extern const pgr_scenario pgr_scenario_conversation_dedup;     /* seed 002 */
extern const pgr_scenario pgr_scenario_message_sequence;       /* seed 003 */
extern const pgr_scenario pgr_scenario_identity_verify;        /* seed 004 */
extern const pgr_scenario pgr_scenario_nullifier_submission;   /* seed 004 */
extern const pgr_scenario pgr_scenario_idempotent_submission;  /* seed 004 */

const pgr_scenario *const pgr_scenarios[] = {
    &pgr_scenario_form_submission,
    &pgr_scenario_invite_claim,
    &pgr_scenario_conversation_dedup,
    &pgr_scenario_message_sequence,
    &pgr_scenario_identity_verify,
    &pgr_scenario_nullifier_submission,
    &pgr_scenario_idempotent_submission,
};
const int pgr_nscenarios = (int)(sizeof pgr_scenarios / sizeof pgr_scenarios[0]);

const pgr_scenario *pgr_find_scenario(const char *name)
{
    for (int i = 0; i < pgr_nscenarios; i++)
        if (strcmp(pgr_scenarios[i]->name, name) == 0) return pgr_scenarios[i];
    return NULL;
}
