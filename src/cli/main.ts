#!/usr/bin/env node
/**
 * `triage`: the command line of the pipeline. Talks to the storage account of the settings
 * (environment, then local.settings.json); with UseDevelopmentStorage=true, to the Azurite of
 * the embedded runtime started by `npm start`.
 */
import os from 'node:os';
import { Command, CommanderError } from 'commander';
import { ConfigError, loadConfig, loadImagingConfig } from '../config';
import { buildDeps, Deps } from '../composition';
import { mergedSettings, resolveLocalStorage } from '../local/settings';
import { RegistryError } from '../registry/registry';
import { CommandContext, UsageError } from './common';
import { registerModelCommands } from './commands/models';
import { registerRetrainCommands } from './commands/retrain';
import { registerReviewCommands } from './commands/review';
import { registerStatusCommand, registerSweepCommand } from './commands/status';
import { registerMlCommands } from './commands/train';
import { registerSamplesCommand, registerUploadCommand } from './commands/upload';

export function depsFromSettings(): Deps {
  return buildDeps(loadConfig(resolveLocalStorage(mergedSettings())), { instanceId: `cli-${os.hostname()}` });
}

export function buildProgram(getDeps: () => Deps = depsFromSettings): Command {
  let deps: Deps | undefined;
  const ctx: CommandContext = { getDeps: () => (deps ??= getDeps()), getStore: () => ctx.getDeps().store };
  const program = new Command('triage')
    .description('Image triage pipeline: upload images, see what happened to them.')
    .exitOverride();
  // The order is the order of `triage --help`.
  registerUploadCommand(program, ctx);
  registerStatusCommand(program, ctx);
  registerReviewCommands(program, ctx);
  registerModelCommands(program, ctx);
  registerSweepCommand(program, ctx);
  registerMlCommands(program, {
    getStore: ctx.getStore,
    imaging: () => {
      const c = loadImagingConfig(mergedSettings());
      return { profile: c.profile, xraySize: c.xraySize, maxInputBytes: c.maxUploadBytes, maxPixels: c.maxPixels };
    },
  });
  registerRetrainCommands(program, { getStore: ctx.getStore, getDeps: ctx.getDeps });
  registerSamplesCommand(program);
  return program;
}

export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UsageError || err instanceof ConfigError || err instanceof RegistryError) {
      console.error(`triage: ${err.message}`);
      return 2;
    }
    console.error(`triage: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (require.main === module) {
  void run(process.argv).then((code) => process.exit(code));
}
