import { app, InvocationContext, Timer } from '@azure/functions';
import { currentDeps } from '../src/composition';
import { contextLog } from '../src/handlers/context';
import { inferOnce } from '../src/handlers/infer';
import { preprocessOnce } from '../src/handlers/preprocess';
import { handleSweep } from '../src/handlers/sweep';

app.timer('sweep', {
  schedule: '%SWEEP_SCHEDULE%',
  handler: async (_timer: Timer, context: InvocationContext): Promise<void> => {
    await handleSweep({ preprocess: preprocessOnce, infer: inferOnce }, currentDeps(), contextLog(context));
  },
});
